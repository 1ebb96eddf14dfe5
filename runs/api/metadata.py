"""``?meta=key=value``: runs whose metadata has that entry, with any characters in either part.

Two databases, two ways, because one expression does not work on both:

- PostgreSQL: ``metadata -> key = '"value"'::jsonb`` (Django's ``KeyTransform``), the key a
  parameter;
- SQLite: an ``EXISTS`` over ``json_each(metadata)``. Its JSON paths cannot name a key holding a
  double quote (there is no escape), and Django's text transform compared with a plain string
  made SQLite parse the value as JSON: ``meta=customer=c-1`` was a 500.

Metadata values are strings (``services`` stores them so), so the match is on the string.
"""

from __future__ import annotations

from django.db import connections
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTransform

from ..models import Run

_SQLITE_ENTRY = (
    "EXISTS (SELECT 1 FROM json_each({table}.metadata) AS entry "
    "WHERE entry.key = %s AND entry.type = 'text' AND entry.value = %s)"
)


def with_metadata(runs: QuerySet[Run], key: str, value: str) -> QuerySet[Run]:
    """``runs`` narrowed to those whose ``metadata[key] == value``."""
    if connections[runs.db].vendor == "sqlite":
        sql = _SQLITE_ENTRY.format(table=Run._meta.db_table)
        entry = RawSQL(sql, (key, value), output_field=BooleanField())
        return runs.alias(_meta=entry).filter(_meta=True)
    return runs.alias(_meta=KeyTransform(key, "metadata")).filter(_meta=value)
