"""Claims that read the run they take: one ``UPDATE ... RETURNING`` instead of an UPDATE and a
SELECT of the row it just changed.

A tick's claim (``claim_ticket``) and a start's (``claim_start``) are the writer's first step on
every run, thousands of times a minute at scale; folding the read into the claim saves a round
trip and a compiled query each time (docs/bench/README.md, "Starts and ticks"). Raw SQL because
the ORM has no ``UPDATE ... RETURNING``; PostgreSQL and SQLite (3.35+) both understand it, and
``sql.returned_runs`` runs the returned columns through Django's own converters.

A chunk of starts is claimed the same way (``claim_starts``), and a tick's other statement, its
re-arm (``rearm``), is written by hand here too: the hottest statements of the engine, in one
place.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Q

from ..models import Run, Thread
from ..status import RunStatus
from .decisions import Counters, Errors
from .sql import active_placeholders, moment, returned_runs, run_columns, run_table


def claim_ticket(run_id: int, ticket: int) -> Run | None:
    """Take poll ticket ``ticket`` and read the run in the same statement (``UPDATE ...
    RETURNING`` every column); None when the ticket is not ours.

    A tick used to claim, then ``SELECT`` the row it had just claimed: one round trip and one
    query compiled for nothing. The returned columns go through Django's own converters
    (``sql.returned_runs``), so the run is the instance a query would have built, minus the
    thread, which loads lazily on the rare path that needs it (the Assistants backend).
    """
    active, statuses = active_placeholders()
    sql = f"""
        UPDATE {run_table()} SET poll_generation = %s
         WHERE id = %s AND poll_generation = %s AND status IN ({active}) AND remote_id <> ''
     RETURNING {run_columns()}
    """
    found = returned_runs(sql, [ticket + 1, run_id, ticket, *statuses])
    return found[0] if found else None


def claim_start(run_id: int, at: datetime) -> Run | None:
    """Take the right to create run ``run_id`` remotely and read it in the same statement, with
    its thread's remote id as ``thread_remote_id`` ("" before the thread is created); None when
    it is not pending or someone holds the claim already (see ``claim_ticket``)."""
    threads = connection.ops.quote_name(Thread._meta.db_table)
    sql = f"""
        UPDATE {run_table()} SET start_claimed_at = %s
         WHERE id = %s AND status = %s AND start_claimed_at IS NULL
     RETURNING {run_columns()},
               (SELECT t.remote_id FROM {threads} t WHERE t.id = {run_table()}.thread_id)
               AS thread_remote_id
    """
    params = [moment(at), run_id, RunStatus.PENDING]
    found = returned_runs(sql, params, extra=("thread_remote_id",))
    return found[0] if found else None


def claim_starts(run_id: int, size: int, at: datetime) -> list[Run]:
    """Take the start claim of run ``run_id`` and of up to ``size - 1`` other runs waiting to
    start (pending, unclaimed, in no batch, with no later start attempt due), oldest first; each
    read as ``claim_start`` reads one. Empty when none was free.

    Why others: a pending run unclaimed is one whose ``start_run`` is queued (or lost, and then
    the sweep resends it), so whichever start gets to it first may create it. When 1,000 runs
    are enqueued at once the first few messages take them all in chunks and their own messages
    find nothing left (one statement each) - see ``starts``.

    PostgreSQL: one statement; ``FOR UPDATE SKIP LOCKED`` so concurrent claimers take disjoint
    chunks and never wait for (or deadlock with) each other, the own run included: one locked by
    someone else is left to that holder, or to the sweep. ``MATERIALIZED`` keeps each CTE's
    ``LIMIT`` from being rescanned into more rows. Elsewhere (SQLite serialises writers): read
    the candidates, then one compare-and-set ``UPDATE ... RETURNING`` that checks them again.
    """
    threads = connection.ops.quote_name(Thread._meta.db_table)
    table = run_table()
    # The status is written out, not bound: the planner then matches the partial index on the
    # waiting runs (runs_run_startable_idx) whatever the driver's parameter binding.
    startable = f"""status = '{RunStatus.PENDING.value}' AND start_claimed_at IS NULL
                    AND batch_id IS NULL AND (next_poll_at IS NULL OR next_poll_at <= %s)"""
    own = f"id = %s AND status = '{RunStatus.PENDING.value}' AND start_claimed_at IS NULL"
    returning = f"""RETURNING {run_columns()},
               (SELECT t.remote_id FROM {threads} t WHERE t.id = {table}.thread_id)
               AS thread_remote_id"""
    if connection.vendor == "postgresql":
        sql = f"""
            WITH own AS MATERIALIZED (SELECT id FROM {table} WHERE {own}
                                       FOR UPDATE SKIP LOCKED),
                 more AS MATERIALIZED (SELECT id FROM {table}
                                        WHERE {startable} AND id <> %s
                                        ORDER BY id LIMIT %s
                                        FOR UPDATE SKIP LOCKED)
            UPDATE {table} SET start_claimed_at = %s
             WHERE id IN (SELECT id FROM own UNION ALL SELECT id FROM more)
            {returning}
        """
        params = [run_id, moment(at), run_id, max(0, size - 1), moment(at)]
    else:
        others = list(
            Run.objects.filter(
                status=RunStatus.PENDING, start_claimed_at__isnull=True, batch__isnull=True
            )
            .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=at))
            .exclude(pk=run_id)
            .order_by("pk")
            .values_list("pk", flat=True)[: max(0, size - 1)]
        )
        listed = ", ".join(["%s"] * len(others)) or "NULL"
        sql = f"""
            UPDATE {table} SET start_claimed_at = %s
             WHERE ({own}) OR (id IN ({listed}) AND {startable})
            {returning}
        """
        params = [moment(at), run_id, *others, moment(at)]
    return returned_runs(sql, params, extra=("thread_remote_id",))


def renew_starts(run_ids: list[int], held: datetime, at: datetime) -> set[int]:
    """Of ``run_ids``, claimed at ``held``, those still pending and still held by that claim,
    now held from ``at``: a chunk renews the claims of each wave before creating it, so a run
    cancelled, expired or released by the sweep meanwhile is not created, and no claim ages
    past ``RUNS_CLAIM_TIMEOUT_S`` while earlier waves were being created."""
    if not run_ids:
        return set()
    sql = f"""
        UPDATE {run_table()} SET start_claimed_at = %s
         WHERE id IN ({", ".join(["%s"] * len(run_ids))}) AND start_claimed_at = %s
           AND status = %s
     RETURNING id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [moment(at), *run_ids, moment(held), RunStatus.PENDING])
        return {row[0] for row in cursor.fetchall()}


def lease(run_id: int, ticket: int, until: datetime) -> bool:
    """Move the due time of a run whose ticket is still ``ticket`` to ``until``: a poll that
    claimed the ticket of a run polled by due time holds it so, and ``runs.poll_due`` does not
    take the run meanwhile. False when the ticket moved (a batch took the run first) or the run
    ended meanwhile (a cancel): an ended run keeps no due time."""
    active, statuses = active_placeholders()
    sql = f"""
        UPDATE {run_table()} SET next_poll_at = %s
         WHERE id = %s AND poll_generation = %s AND status IN ({active})
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [moment(until), run_id, ticket, *statuses])
        return cursor.rowcount > 0


def rearm(
    run_id: int,
    ticket: int,
    due: datetime,
    attempt: int | None,
    *,
    by_due: bool | None = None,
    counters: Counters,
    errors: Errors,
    remote_id: str | None = None,
) -> tuple[str, bool] | None:
    """A tick's re-arm: the next due time (and schedule position, and whether ``runs.poll_due``
    finds it, ``Run.poll_by_due``, unless ``by_due`` is None), the calls counted, the error
    count, where the run is still active and its ticket is still ``ticket``. The run's strategy
    and ``poll_by_due`` as written if it matched (the writer then knows whether to enqueue its
    poll: ``poll_modes.found_by_batch``), else None.

    Not a claim, but its other half: the one write of every unchanged tick, hand-written like
    the claim because the ORM's compile of this UPDATE cost more CPU than the round trip.
    """
    quote = connection.ops.quote_name
    sets, params = ["next_poll_at = %s"], [moment(due)]
    if by_due is not None:
        sets.append("poll_by_due = %s")
        params.append(by_due)
    if attempt is not None:
        sets.append("poll_attempt = %s")
        params.append(attempt)
    for name in ("api_calls", "polls", "webhook_events"):
        if getattr(counters, name):
            sets.append(f"{quote(name)} = {quote(name)} + %s")
            params.append(getattr(counters, name))
    if errors == "reset":
        sets.append("error_retries = 0")
    elif errors == "count":
        sets.append("error_retries = error_retries + 1")
    if remote_id:
        sets.append("remote_id = %s")
        params.append(remote_id)
    active, statuses = active_placeholders()
    sql = f"""
        UPDATE {run_table()} SET {", ".join(sets)}
         WHERE id = %s AND poll_generation = %s AND status IN ({active})
     RETURNING strategy, poll_by_due
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, run_id, ticket, *statuses])
        row = cursor.fetchone()
    return (row[0], bool(row[1])) if row else None
