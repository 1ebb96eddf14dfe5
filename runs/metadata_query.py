"""Queries on a run's metadata by key: the runs with ``key=value``, and each run's value of a
key; any characters in either part, on both databases. The API's ``?meta=``, the spend limits,
the cost totals by key and the admin's search all ask here.

Why not Django's ``KeyTransform``/``KeyTextTransform``: on PostgreSQL they take a key that reads
as an integer (``"7"``, ``"-1"``) for an array index (``metadata -> 7``), which on an object is
NULL. The filter then matched nothing, and a spend limit on such a key never applied. Here the
key is always a text parameter:

- PostgreSQL: ``metadata @> '{"key": "value"}'`` (containment: the value must be that string,
  which is what metadata values are, ``services`` stores them so) and ``metadata ->> %s``;
- SQLite: ``json_each(metadata)``. Its JSON paths cannot name a key holding a double quote
  (there is no escape), and Django's text transform compared with a plain string made SQLite
  parse the value as JSON: ``meta=customer=c-1`` was a 500.
"""

from __future__ import annotations

from django.db import connections
from django.db.models import BooleanField, Expression, QuerySet, TextField
from django.db.models.expressions import RawSQL

from .models import Run

_SQLITE_VALUE = (
    "(SELECT entry.value FROM json_each({table}.metadata) AS entry "
    "WHERE entry.key = %s AND entry.type = 'text')"
)
_SQLITE_ENTRY = (
    "EXISTS (SELECT 1 FROM json_each({table}.metadata) AS entry "
    "WHERE entry.key = %s AND entry.type = 'text' AND entry.value = %s)"
)


def with_entry(runs: QuerySet[Run], key: str, value: str) -> QuerySet[Run]:
    """``runs`` narrowed to those whose ``metadata[key] == value``."""
    if connections[runs.db].vendor == "sqlite":
        sql = _SQLITE_ENTRY.format(table=_table(runs.db))
        entry = RawSQL(sql, (key, value), output_field=BooleanField())
        return runs.alias(_meta=entry).filter(_meta=True)
    return runs.filter(metadata__contains={key: value})


def value_of(key: str, using: str = "default") -> Expression:
    """``metadata[key]`` as text (NULL when absent), for a ``GROUP BY``."""
    if connections[using].vendor == "sqlite":
        return RawSQL(_SQLITE_VALUE.format(table=_table(using)), (key,), output_field=TextField())
    return RawSQL(f"{_table(using)}.metadata ->> %s", (key,), output_field=TextField())


def _table(using: str) -> str:
    return connections[using].ops.quote_name(Run._meta.db_table)
