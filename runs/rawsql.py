"""Plain statements for the few one-row reads and writes every start and every status change
makes, written out rather than compiled by the ORM on each call.

Django builds a query's SQL anew every time it runs one: for a one-row read or write on this
project's test machine that compile cost more CPU than the database's answer, and a start made
four such statements (docs/bench/README.md, "The start's statements"). These helpers take a model
and field names, so tables and columns come from the model as the ORM's would, and values go
through each field's ``get_db_prep_save`` (``get_db_prep_value`` in a condition), as the ORM's
do: a datetime, for one, is spelled as SQLite's text on SQLite.

What they do not do: expressions other than a column's own increment (``F("n") + 1``) and its
first value (``Coalesce(F("at"), Value(now))``: set once, then kept), lookups
other than ``=``/``IS NULL``/``IN``, joins, a statement with no condition, inserts of this
project's own models (their ``save`` signals are a host's to listen to; ``upsert`` is for a
library's row nobody listens for, a task's result). Anything needing those stays a queryset:
``writable`` says whether ``update`` can write a set of values. Like the engine's other raw
statements (the claims), they run on the default database unless ``using`` names another: no
router is asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Coalesce


def any_row(
    model: type[models.Model], equals: Mapping[str, Any], using: str = DEFAULT_DB_ALIAS
) -> bool:
    """Whether some row of ``model`` has the values of ``equals`` (field name: value).

    For a probe on an indexed column that almost always finds nothing (a start asking whether a
    webhook beat it).
    """
    db = connections[using]
    where, params = _where(db, model, equals)
    sql = f"SELECT 1 FROM {_table(db, model)} WHERE {where} LIMIT 1"
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
    where, params = _where(db, model, equals, null=null)
    pk = quote(model._meta.pk.column)
    sql = f"SELECT {names} FROM {_table(db, model)} WHERE {where} ORDER BY {pk}"
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
    is in ``pk_in``, when given) to ``values``; the number of rows changed.

    Unlike ``QuerySet.update`` it does not mark an enclosing ``atomic`` block for rollback when
    the statement fails: the error propagates, and a caller inside such a block must let it.
    """
    if not values:
        raise ValueError("an UPDATE needs at least one value to set")
    if pk_in is not None and not pk_in:
        return 0
    db = connections[using]
    quote = db.ops.quote_name
    assignments, params = [], []
    for name, value in values.items():
        field = _field(model, name)
        column = quote(field.column)
        if (step := _increment(name, value)) is not None:
            assignments.append(f"{column} = {column} + %s")
            params.append(step)
        elif (first := _first_value(name, value)) is not None:
            assignments.append(f"{column} = COALESCE({column}, %s)")
            params.append(field.get_db_prep_save(first.value, db))
        elif not _plain(value):
            raise ValueError(
                f"{name}: only plain values, F({name!r}) + n and Coalesce(F({name!r}), Value(v))"
                " are written out"
            )
        else:
            assignments.append(f"{column} = %s")
            params.append(field.get_db_prep_save(value, db))
    where, where_params = _where(db, model, equals, pk_in=pk_in)
    sql = f"UPDATE {_table(db, model)} SET {', '.join(assignments)} WHERE {where}"
    with db.cursor() as cursor:
        cursor.execute(sql, params + where_params)
        return cursor.rowcount


def can_upsert(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether ``upsert`` can write on database ``using``: an ``INSERT ... ON CONFLICT (columns)
    DO UPDATE`` as PostgreSQL and SQLite spell it; not MySQL, whose upsert names no conflict
    target, nor a third-party backend that may spell it otherwise."""
    db = connections[using]
    return db.vendor in ("postgresql", "sqlite") and bool(
        db.features.supports_update_conflicts_with_target
    )


def upsert(
    model: type[models.Model],
    values: Mapping[str, Any],
    unique: Sequence[str],
    keep: Sequence[str] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> None:
    """Insert a row of ``model`` with ``values`` or, when one with the same ``unique`` fields
    exists (a unique constraint on them), overwrite its other values but those in ``keep``: one
    statement, where ``get_or_create`` and a ``save`` take a read and a transaction around the
    insert. Plain values only; ``can_upsert`` says where it works."""
    db = connections[using]
    if not can_upsert(using):
        raise NotImplementedError(f"{db.vendor}: no INSERT ... ON CONFLICT (columns) DO UPDATE")
    missing = [name for name in (*unique, *keep) if name not in values]
    if missing:
        raise ValueError(f"unique and keep fields need a value to insert: {missing}")
    quote = db.ops.quote_name
    columns, params = [], []
    for name, value in values.items():
        if not _plain(value):
            raise ValueError(f"{name}: only plain values are written out")
        field = _field(model, name)
        columns.append(quote(field.column))
        params.append(field.get_db_prep_save(value, db))
    target = ", ".join(quote(_field(model, name).column) for name in unique)
    overwrite = [
        quote(_field(model, name).column) for name in values if name not in (*unique, *keep)
    ]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in overwrite)
        if overwrite
        else "DO NOTHING"
    )
    sql = (
        f"INSERT INTO {_table(db, model)} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) ON CONFLICT ({target}) {action}"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, params)


def writable(values: Mapping[str, Any]) -> bool:
    """Whether ``update`` can write every one of ``values``: plain values (no model instance, no
    expression), increments of the field itself (``F(name) + n``) and its first value
    (``Coalesce(F(name), Value(v))``)."""
    return all(
        _increment(k, v) is not None or _first_value(k, v) is not None or _plain(v)
        for k, v in values.items()
    )


def _increment(name: str, value: Any) -> int | None:
    """``n`` for ``F(name) + n`` (``n`` an integer), else None."""
    if (
        isinstance(value, CombinedExpression)
        and value.connector == "+"
        and type(value.lhs) is F  # not OuterRef, which subclasses F
        and value.lhs.name == name
        and isinstance(value.rhs, Value)
        and type(value.rhs.value) is int
    ):
        return value.rhs.value
    return None


def _first_value(name: str, value: Any) -> Value | None:
    """The ``Value(v)`` of ``Coalesce(F(name), Value(v))`` (``v`` a plain value): the column's
    own value where it has one, else ``v``. A stamp set once (a run's ``started_at``)."""
    if type(value) is not Coalesce:
        return None
    sources = value.get_source_expressions()
    if (
        len(sources) == 2
        and type(sources[0]) is F
        and sources[0].name == name
        and type(sources[1]) is Value
        and sources[1].value is not None
        and _plain(sources[1].value)
    ):
        return sources[1]
    return None


def _plain(value: Any) -> bool:
    """A value a field prepares as a parameter: no model instance, nothing the ORM compiles."""
    compiled = hasattr(value, "resolve_expression") or hasattr(value, "as_sql")
    return not isinstance(value, models.Model) and not compiled


def _table(db: BaseDatabaseWrapper, model: type[models.Model]) -> str:
    return db.ops.quote_name(model._meta.db_table)


def _field(model: type[models.Model], name: str) -> models.Field:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


def _where(
    db: BaseDatabaseWrapper,
    model: type[models.Model],
    equals: Mapping[str, Any],
    null: Sequence[str] = (),
    pk_in: Sequence[int] | None = None,
) -> tuple[str, list[Any]]:
    """The condition (``a = %s AND b IS NULL AND id IN (...)``) and its parameters. A condition
    is required: these helpers are for rows named by their values, never a whole table."""
    quote = db.ops.quote_name
    clauses, params = [], []
    for name, value in equals.items():
        if value is None:  # "= NULL" matches nothing, where the ORM would write IS NULL
            raise ValueError(f"{name}=None: name the field in null= instead")
        field = _field(model, name)
        clauses.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_value(value, db))
    clauses += [f"{quote(_field(model, name).column)} IS NULL" for name in null]
    if pk_in is not None:
        clauses.append(f"{quote(model._meta.pk.column)} IN ({', '.join(['%s'] * len(pk_in))})")
        params += list(pk_in)
    if not clauses:
        raise ValueError("a condition is required: these statements never cover a whole table")
    return " AND ".join(clauses), params
