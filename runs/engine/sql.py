"""What the engine's raw statements share (``bulk``, ``claims``): the run table's quoted name,
the placeholders of the active statuses, the spelling of a moment and the reading of the runs a
statement returns, so every hand-written ``UPDATE`` names, writes and reads them alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ..models import Run
from ..status import ACTIVE


def run_table() -> str:
    return connection.ops.quote_name(Run._meta.db_table)


def active_placeholders() -> tuple[str, list[str]]:
    """(``%s, %s, ...`` for ``status IN (...)``, the statuses to pass for them)."""
    statuses = sorted(ACTIVE)
    return ", ".join(["%s"] * len(statuses)), statuses


def wake_set(prefix: str = "") -> str:
    """A wake's SET: a fresh ticket, due at once, the webhook events counted (parameters: the
    moment, the count). ``prefix``: the run table's alias and a dot, where the statement has one.
    """
    return (
        f"poll_generation = {prefix}poll_generation + 1, next_poll_at = %s, "
        f"webhook_events = {prefix}webhook_events + %s"
    )


def wakeable(prefix: str = "") -> tuple[str, list[str]]:
    """What a run must be for a wake to take its ticket (active, with a remote id), as a WHERE
    condition, and its parameters."""
    active, statuses = active_placeholders()
    return f"{prefix}status IN ({active}) AND {prefix}remote_id <> ''", statuses


def moment(value: datetime) -> object:
    """A datetime as the ORM would store it, for a raw statement's parameters.

    On SQLite the ORM stores naive UTC text, while a datetime bound as it is keeps its offset
    ("+00:00"): the same moment in two spellings, which an equality filter (the sweep's release
    of a stale claim) would not match. PostgreSQL gets the value unchanged.
    """
    return connection.ops.adapt_datetimefield_value(value)


def run_columns() -> str:
    """Every column of the run, in the model's field order: what ``returned_runs`` reads."""
    quote = connection.ops.quote_name
    return ", ".join(quote(f.column) for f in Run._meta.concrete_fields)


def returned_runs(sql: str, params: Sequence[Any], extra: Sequence[str] = ()) -> list[Run]:
    """Run ``sql`` (on the default connection: a claim is a write, never for a replica) and build
    a run from each row it returns: ``run_columns()``, then one column per name in ``extra``,
    set on the run as an attribute of that name.

    The values go through the converters a query would apply (JSON, decimals, SQLite's
    datetimes). Why not ``Run.objects.raw``: it maps the cursor's columns to fields and orders the
    model's init again for every statement, 7 % of the GIL samples of a worker running poll ticks
    (docs/bench/README.md, "The claim's read"); here the columns are fixed, so that is done once
    per connection.
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return []
    names, converters = _reading(connections[connection.alias])
    width = len(names)
    runs = []
    for row in rows:
        values = list(row[:width])
        for index, field_converters, expression in converters:
            for convert in field_converters:
                values[index] = convert(values[index], expression, connection)
        run = Run.from_db(connection.alias, names, values)
        for name, value in zip(extra, row[width:], strict=True):
            setattr(run, name, value)
        runs.append(run)
    return runs


Converter = Callable[[Any, Any, Any], Any]
Reading = tuple[list[str], list[tuple[int, list[Converter], Any]]]

#: Per connection (a thread's own, for each alias), since a backend's converters are methods of
#: that connection's operations: one kept here never outlives its connection.
_readings: WeakKeyDictionary[BaseDatabaseWrapper, Reading] = WeakKeyDictionary()


def _reading(db: BaseDatabaseWrapper) -> Reading:
    """(the run's attribute names in column order, the converters of each column that has any),
    as Django's compiler works them out for a query (``SQLCompiler.get_converters``)."""
    if (known := _readings.get(db)) is not None:
        return known
    fields = Run._meta.concrete_fields
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(Run._meta.db_table)
        found = db.ops.get_db_converters(column) + column.get_db_converters(db)
        if found:
            converters.append((index, found, column))
    reading: Reading = ([f.attname for f in fields], converters)
    _readings[db] = reading
    return reading
