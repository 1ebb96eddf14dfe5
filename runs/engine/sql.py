"""What the engine's raw statements share (``bulk``, ``claims``): the run table's quoted name,
the placeholders of the active statuses and the spelling of a moment, so every hand-written
``UPDATE`` names and writes them alike."""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from ..models import Run
from ..status import ACTIVE


def run_table() -> str:
    return connection.ops.quote_name(Run._meta.db_table)


def active_placeholders() -> tuple[str, list[str]]:
    """(``%s, %s, ...`` for ``status IN (...)``, the statuses to pass for them)."""
    statuses = sorted(ACTIVE)
    return ", ".join(["%s"] * len(statuses)), statuses


def moment(value: datetime) -> object:
    """A datetime as the ORM would store it, for a raw statement's parameters.

    On SQLite the ORM stores naive UTC text, while a datetime bound as it is keeps its offset
    ("+00:00"): the same moment in two spellings, which an equality filter (the sweep's release
    of a stale claim) would not match. PostgreSQL gets the value unchanged.
    """
    return connection.ops.adapt_datetimefield_value(value)
