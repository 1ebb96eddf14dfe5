"""Claims that read the run they take: one ``UPDATE ... RETURNING`` instead of an UPDATE and a
SELECT of the row it just changed.

A tick's claim (``claim_ticket``) and a start's (``claim_start``) are the writer's first step on
every run, thousands of times a minute at scale; folding the read into the claim saves a round
trip and a compiled query each time (docs/bench/README.md, "Starts and ticks"). Raw SQL because
the ORM has no ``UPDATE ... RETURNING``; PostgreSQL and SQLite (3.35+) both understand it, and
``Model.objects.raw`` runs the returned columns through Django's own converters.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from ..models import Run, Thread
from ..status import RunStatus
from .sql import active_placeholders, run_table


def claim_ticket(run_id: int, ticket: int) -> Run | None:
    """Take poll ticket ``ticket`` and read the run in the same statement (``UPDATE ...
    RETURNING`` every column); None when the ticket is not ours.

    A tick used to claim, then ``SELECT`` the row it had just claimed: one round trip and one
    query compiled for nothing. The returned columns go through Django's own converters
    (``Model.objects.raw``), so the run is the instance a query would have built, minus the
    thread, which loads lazily on the rare path that needs it (the Assistants backend).
    """
    active, statuses = active_placeholders()
    sql = f"""
        UPDATE {run_table()} SET poll_generation = %s
         WHERE id = %s AND poll_generation = %s AND status IN ({active}) AND remote_id <> ''
     RETURNING {_columns()}
    """
    # using=: raw() would route to db_for_read, a replica in some hosts; this is a write.
    found = list(
        Run.objects.raw(sql, [ticket + 1, run_id, ticket, *statuses], using=connection.alias)
    )
    return found[0] if found else None


def claim_start(run_id: int, at: datetime) -> Run | None:
    """Take the right to create run ``run_id`` remotely and read it in the same statement, with
    its thread's remote id as ``thread_remote_id`` ("" before the thread is created); None when
    it is not pending or someone holds the claim already (see ``claim_ticket``)."""
    threads = connection.ops.quote_name(Thread._meta.db_table)
    sql = f"""
        UPDATE {run_table()} SET start_claimed_at = %s
         WHERE id = %s AND status = %s AND start_claimed_at IS NULL
     RETURNING {_columns()},
               (SELECT t.remote_id FROM {threads} t WHERE t.id = {run_table()}.thread_id)
               AS thread_remote_id
    """
    found = list(Run.objects.raw(sql, [at, run_id, RunStatus.PENDING], using=connection.alias))
    return found[0] if found else None


def _columns() -> str:
    quote = connection.ops.quote_name
    return ", ".join(quote(f.column) for f in Run._meta.concrete_fields)
