"""What the engine's raw statements share (``bulk``, ``claims``): the run table's quoted name and
the placeholders of the active statuses, so every hand-written ``UPDATE`` names them alike."""

from __future__ import annotations

from django.db import connection

from ..models import Run
from ..status import ACTIVE


def run_table() -> str:
    return connection.ops.quote_name(Run._meta.db_table)


def active_placeholders() -> tuple[str, list[str]]:
    """(``%s, %s, ...`` for ``status IN (...)``, the statuses to pass for them)."""
    statuses = sorted(ACTIVE)
    return ", ".join(["%s"] * len(statuses)), statuses
