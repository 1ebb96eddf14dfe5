"""Plain statements for the few one-row reads and writes every start makes, written out rather
than compiled by the ORM on each call.

Django builds a query's SQL anew every time it runs one: for a one-row read or write on this
project's test machine that compile cost more CPU than the database's answer, and a start made
four such statements (docs/bench/README.md, "The start's statements"). These helpers take a model
and field names, so tables and columns come from the model as the ORM's would, and values go
through each field's ``get_db_prep_save``, as the ORM's writes do (JSON, datetimes on SQLite).

What they do not do: expressions (``F("n") + 1``), lookups other than ``=``/``IS NULL``/``IN``,
joins, inserts (a model's ``save`` signals are a host's to listen to). Anything needing those
stays a queryset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper


def any_row(model: type[models.Model], using: str = DEFAULT_DB_ALIAS, **equals: Any) -> bool:
    """Whether some row of ``model`` has these values (``field=value``).

    For a probe on an indexed column that almost always finds nothing (a start asking whether a
    webhook beat it).
    """
    db = connections[using]
    where, params = _equal(db, model, equals)
    sql = f"SELECT 1 FROM {_table(db, model)} WHERE {' AND '.join(where)} LIMIT 1"
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def column_rows(
    model: type[models.Model],
    columns: Sequence[str],
    equals: Mapping[str, Any],
    null: Sequence[str] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> list[tuple[Any, ...]]:
    """The ``columns`` (field names, ``pk`` included) of ``model``'s rows that have the values of
    ``equals`` and no value in the ``null`` fields, in primary-key order. Only for columns whose
    values need no converter on the way out (text, integers)."""
    db = connections[using]
    quote = db.ops.quote_name
    names = ", ".join(quote(_field(model, c).column) for c in columns)
    where, params = _equal(db, model, equals)
    where += [f"{quote(_field(model, f).column)} IS NULL" for f in null]
    pk = quote(model._meta.pk.column)
    sql = f"SELECT {names} FROM {_table(db, model)} WHERE {' AND '.join(where)} ORDER BY {pk}"
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def update(
    model: type[models.Model],
    values: Mapping[str, Any],
    equals: Mapping[str, Any],
    pk_in: Sequence[int] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """``UPDATE`` the rows of ``model`` that have the values of ``equals`` (and whose primary key
    is in ``pk_in``, when given) to ``values``; the number of rows changed."""
    db = connections[using]
    quote = db.ops.quote_name
    assignments, params = [], []
    for name, value in values.items():
        field = _field(model, name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, db))
    where, where_params = _equal(db, model, equals)
    if pk_in is not None:
        if not pk_in:
            return 0
        where.append(f"{quote(model._meta.pk.column)} IN ({', '.join(['%s'] * len(pk_in))})")
        where_params += list(pk_in)
    sql = f"UPDATE {_table(db, model)} SET {', '.join(assignments)} WHERE {' AND '.join(where)}"
    with db.cursor() as cursor:
        cursor.execute(sql, params + where_params)
        return cursor.rowcount


def _table(db: BaseDatabaseWrapper, model: type[models.Model]) -> str:
    return db.ops.quote_name(model._meta.db_table)


def _field(model: type[models.Model], name: str) -> models.Field:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


def _equal(
    db: BaseDatabaseWrapper, model: type[models.Model], equals: Mapping[str, Any]
) -> tuple[list[str], list[Any]]:
    where, params = [], []
    for name, value in equals.items():
        field = _field(model, name)
        where.append(f"{db.ops.quote_name(field.column)} = %s")
        params.append(field.get_db_prep_value(value, db))
    return where, params
