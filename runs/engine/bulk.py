"""The writer's set-based statements: claim every due run at once, re-arm many ticks in one UPDATE,
bump or take a ticket and read it back in one round trip, take the start claims of a batch's runs.

They sit below ``writer`` (which calls them) and write the same columns under the same rules: a
claim advances the ticket, a re-arm is a compare-and-set on the ticket the tick holds and on an
active status, counters are counted whether or not the re-arm matched. Batched polling
(``batch_poll``) is their main caller: one statement per batch instead of one per run.

Raw SQL where the ORM has no form for it (``UPDATE ... RETURNING``, ``FOR UPDATE SKIP LOCKED``
inside an UPDATE, ``UPDATE ... FROM`` a list of values) or compiles it at a cost that matters
(a batch's re-arm); both PostgreSQL and SQLite (3.35+) understand ``RETURNING`` and ``FROM``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from ..models import Run
from ..status import ACTIVE, RunStatus
from .sql import active_placeholders, moment, run_table, wake_set, wakeable


@dataclass(frozen=True)
class Claimed:
    """A run taken by a batch claim: its id, the ticket the batch now holds, when it was due."""

    run_id: int
    ticket: int
    due_at: datetime | None


@dataclass(frozen=True)
class Rearm:
    """One tick's re-arm and counts: counters, errors, the next due time (its status change, if
    any, is written apart: ``bulk_moves``)."""

    run_id: int
    ticket: int
    #: None: count only (a tick that ended its run polls no more).
    due_at: datetime | None
    attempt: int | None
    api_calls: int = 0
    polls: int = 0
    #: "keep", "reset" or "count" (``decisions.Errors``).
    errors: str = "keep"


def claim_due(
    limit: int,
    lease_s: float,
    now: datetime | None = None,
    ahead_s: float = 0.0,
    strategies: Sequence[str] | None = None,
) -> list[Claimed]:
    """Take up to ``limit`` runs whose poll is due (by ``now + ahead_s``), each once, however
    many claimers run; when ``strategies`` is given, only runs tracked by one of them (the
    batched ones, ``poll_modes.by_due``) and runs whose next poll was left to the batches
    (``Run.poll_by_due``: "auto" handed them over). Every other run has a countdown task of
    its own, and a batch that took it too would retrieve it twice; a flagged run has none,
    whatever the modes are now, so the batches never leave one to the sweep.

    Each claimed run gets a fresh ticket (so a poll task still waiting for it exits without an API
    call) and a due time ``lease_s`` ahead: no other claim takes it while this batch works on it,
    and if the worker dies mid-batch the run is simply due again when the lease ends.

    PostgreSQL: one statement, ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n)
    RETURNING``: concurrent claimers skip each other's rows instead of waiting or doubling.
    Elsewhere (SQLite, which serialises writers anyway): read the candidates, then one
    compare-and-set on the ticket per run, keeping those that matched.
    """
    now = now or timezone.now()
    lease_until = now + timedelta(seconds=lease_s)
    due_by = now + timedelta(seconds=ahead_s)
    active, statuses = active_placeholders()
    which, kinds = "", []
    if strategies is not None:
        among = [f"strategy IN ({', '.join(['%s'] * len(strategies))})"] if strategies else []
        which = f"AND ({' OR '.join([*among, 'poll_by_due'])})"
        kinds = list(strategies)
    if connection.vendor == "postgresql":
        sql = f"""
            UPDATE {run_table()} AS r
               SET poll_generation = r.poll_generation + 1, next_poll_at = %s
              FROM (SELECT id, next_poll_at FROM {run_table()}
                     WHERE status IN ({active}) AND remote_id <> '' AND next_poll_at <= %s
                           {which}
                     ORDER BY next_poll_at LIMIT %s
                     FOR UPDATE SKIP LOCKED) AS due
             WHERE r.id = due.id
         RETURNING r.id, r.poll_generation, due.next_poll_at
        """
        params = [moment(lease_until), *statuses, moment(due_by), *kinds, limit]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return sorted((Claimed(*row) for row in rows), key=lambda c: (c.due_at or now, c.run_id))
    due = Run.objects.filter(status__in=ACTIVE, next_poll_at__lte=due_by)
    if strategies is not None:
        due = due.filter(Q(strategy__in=strategies) | Q(poll_by_due=True))
    candidates = list(
        due.exclude(remote_id="")
        .order_by("next_poll_at")
        .values_list("pk", "poll_generation", "next_poll_at")[:limit]
    )
    claimed = []
    for run_id, ticket, due_at in candidates:
        if (
            Run.objects.filter(pk=run_id, poll_generation=ticket, status__in=ACTIVE)
            .exclude(remote_id="")
            .update(poll_generation=ticket + 1, next_poll_at=lease_until)
        ):
            claimed.append(Claimed(run_id, ticket + 1, due_at))
    return claimed


def bump_ticket(run_id: int, next_poll_at: datetime, webhook_events: int = 0) -> int | None:
    """Take a fresh ticket for an active run with a remote id and return it (one round trip);
    None when the run is not active or has no remote id yet."""
    wakes, statuses = wakeable()
    sql = f"""
        UPDATE {run_table()} SET {wake_set()} WHERE id = %s AND {wakes} RETURNING poll_generation
    """
    return _ticket(sql, [moment(next_poll_at), webhook_events, run_id, *statuses])


def take_ticket(run_id: int, status: str) -> int | None:
    """Take a fresh ticket for a run in ``status`` with a remote id and return it (one round
    trip); None when the run is in another status or has no remote id yet. Nothing else
    changes: the caller enqueues the poll, or not."""
    sql = f"""
        UPDATE {run_table()}
           SET poll_generation = poll_generation + 1
         WHERE id = %s AND status = %s AND remote_id <> ''
     RETURNING poll_generation
    """
    return _ticket(sql, [run_id, status])


def _ticket(sql: str, params: list[Any]) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def rearm_all(items: list[Rearm]) -> None:
    """Write many ticks' re-arms and counts in one UPDATE (several only past the database's bound
    on parameters: SQLite's, 999 in the oldest builds; PostgreSQL has none that a batch reaches).

    Counters and errors are written for every run (the calls were made whatever happened since);
    the due time and the schedule position only where the run is still active and its ticket is
    still the tick's, exactly as ``writer.apply`` does for one tick. Nothing is enqueued: this is
    for batched polling, where ``runs.poll_due`` finds a run by its due time.

    Written out, the ticks joined as a list of values (``UPDATE ... FROM``, PostgreSQL and SQLite
    3.33+): the ORM's form of it, a ``CASE`` with one ``WHEN`` per run for each column, cost more
    CPU to compile than the rest of the batch's writes together, on the one process that ticks
    every run polled by due time (docs/bench/README.md, "The batch's re-arm").
    """
    # In id order: the rows are locked as the plan meets them, and two writers that meet the
    # same rows in the same order wait for each other rather than deadlock.
    items = sorted(items, key=lambda i: i.run_id)
    size = rearm_rows()
    for start in range(0, len(items), size):
        _rearm_rows(items[start : start + size])


def rearm_rows() -> int:
    """Ticks per re-arm statement: seven parameters each, and ten for the statuses, under the
    database's bound (PostgreSQL's is the protocol's, 65,535)."""
    return ((connection.features.max_query_params or 65_535) - 10) // 7


#: ``Rearm.errors`` as the statement's ``CASE`` reads it.
_ERRORS = {"keep": 0, "reset": 1, "count": 2}


def _rearm_rows(items: list[Rearm]) -> None:
    if not items:
        return
    table = run_table()
    active, statuses = active_placeholders()
    # Typed, because PostgreSQL infers a VALUES list's column types from its first row, and a
    # NULL there (no schedule position) would be text.
    due = "CAST(%s AS timestamp with time zone)" if connection.vendor == "postgresql" else "%s"
    row = f"(CAST(%s AS bigint), CAST(%s AS bigint), {due}, CAST(%s AS integer), " + (
        "CAST(%s AS integer), CAST(%s AS integer), CAST(%s AS integer))"
    )
    held = (
        f"{table}.status IN ({active}) AND {table}.poll_generation = t.ticket"
        " AND t.due_at IS NOT NULL"
    )
    sql = f"""
        WITH t (run_id, ticket, due_at, attempt, n_api_calls, n_polls, errors) AS (
            VALUES {", ".join([row] * len(items))}
        )
        UPDATE {table}
           SET next_poll_at = CASE WHEN {held} THEN t.due_at ELSE next_poll_at END,
               poll_attempt = CASE WHEN {held} AND t.attempt IS NOT NULL
                                   THEN t.attempt ELSE poll_attempt END,
               api_calls = api_calls + t.n_api_calls,
               polls = polls + t.n_polls,
               error_retries = CASE t.errors WHEN 1 THEN 0 WHEN 2 THEN error_retries + 1
                                             ELSE error_retries END
          FROM t
         WHERE {table}.id = t.run_id
    """
    params: list[object] = []
    for i in items:
        due_at = None if i.due_at is None else moment(i.due_at)
        params += [i.run_id, i.ticket, due_at, i.attempt, i.api_calls, i.polls]
        params.append(_ERRORS[i.errors])
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *statuses, *statuses])


def join_batch(run_ids: Sequence[int], batch_id: int, **fields: Any) -> int:
    """Runs join batch ``batch_id``, which takes their start claims (it sends them; no
    ``start_run`` will), with ``fields``: a compare-and-set per chunk of ids on runs still
    pending, unclaimed and in no batch, so a start racing the batch creates nothing. The chunks
    keep a statement under the database's bound on parameters (SQLite: 999). Returns how many
    runs joined."""
    now = timezone.now()
    size = (connection.features.max_query_params or 10_000) - 50
    joined = 0
    for start in range(0, len(run_ids), size):
        joined += Run.objects.filter(
            pk__in=run_ids[start : start + size],
            status=RunStatus.PENDING,
            start_claimed_at__isnull=True,
            batch=None,
        ).update(batch_id=batch_id, start_claimed_at=now, **fields)
    return joined
