"""The writer's set-based statements: claim every due run at once, re-arm many ticks in one UPDATE,
bump a ticket and read it back in one round trip, take the start claims of a batch's runs.

They sit below ``writer`` (which calls them) and write the same columns under the same rules: a
claim advances the ticket, a re-arm is a compare-and-set on the ticket the tick holds and on an
active status, counters are counted whether or not the re-arm matched. Batched polling
(``batch_poll``) is their main caller: one statement per batch instead of one per run.

Raw SQL where the ORM has no form for it (``UPDATE ... RETURNING``, ``FOR UPDATE SKIP LOCKED``
inside an UPDATE); both PostgreSQL and SQLite (3.35+) understand ``RETURNING``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.db.models.fields import DateTimeField, Field
from django.utils import timezone

from ..models import Run
from ..status import ACTIVE, RunStatus
from .decisions import Decision
from .sql import active_placeholders, moment, run_table


@dataclass(frozen=True)
class Claimed:
    """A run taken by a batch claim: its id, the ticket the batch now holds, when it was due."""

    run_id: int
    ticket: int
    due_at: datetime | None


@dataclass(frozen=True)
class Rearm:
    """One plain tick's writes (no status change): counters, errors, the next due time."""

    run_id: int
    ticket: int
    due_at: datetime
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
    many claimers run; only runs tracked by one of ``strategies`` when given (the others have a
    countdown task of their own: ``schedule.by_due``).

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
    if strategies is not None and not strategies:
        return []
    active, statuses = active_placeholders()
    which, kinds = "", []
    if strategies is not None:
        which = f"AND strategy IN ({', '.join(['%s'] * len(strategies))})"
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
        due = due.filter(strategy__in=strategies)
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
    active, statuses = active_placeholders()
    sql = f"""
        UPDATE {run_table()}
           SET poll_generation = poll_generation + 1, next_poll_at = %s,
               webhook_events = webhook_events + %s
         WHERE id = %s AND status IN ({active}) AND remote_id <> ''
     RETURNING poll_generation
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [moment(next_poll_at), webhook_events, run_id, *statuses])
        row = cursor.fetchone()
    return row[0] if row else None


def rearm_all(items: list[Rearm]) -> None:
    """Write many plain ticks in one UPDATE.

    Counters and errors are written for every run (the calls were made whatever happened since);
    the due time and the schedule position only where the run is still active and its ticket is
    still the tick's, exactly as ``writer.apply`` does for one tick. Nothing is enqueued: this is
    for batched polling, where ``runs.poll_due`` finds a run by its due time.
    """
    if not items:
        return
    ids = [i.run_id for i in items]
    pairs = [(i, Q(pk=i.run_id, poll_generation=i.ticket)) for i in items]
    values: dict[str, object] = {
        "next_poll_at": _where_held(pairs, "next_poll_at", DateTimeField(), lambda i: i.due_at)
    }
    with_attempt = [(i, held) for i, held in pairs if i.attempt is not None]
    if with_attempt:
        values["poll_attempt"] = _where_held(
            with_attempt, "poll_attempt", IntegerField(), lambda i: i.attempt
        )
    for name in ("api_calls", "polls"):
        counted = [i for i in items if getattr(i, name)]
        if counted:
            values[name] = F(name) + Case(
                *[When(pk=i.run_id, then=Value(getattr(i, name))) for i in counted],
                default=Value(0),
                output_field=IntegerField(),
            )
    reset = [i.run_id for i in items if i.errors == "reset"]
    count = [i.run_id for i in items if i.errors == "count"]
    if reset or count:
        values["error_retries"] = Case(
            When(pk__in=reset or [0], then=Value(0)),
            When(pk__in=count or [0], then=F("error_retries") + 1),
            default=F("error_retries"),
            output_field=IntegerField(),
        )
    Run.objects.filter(pk__in=ids).update(**values)


def _where_held(
    pairs: list[tuple[Rearm, Q]], column: str, field: Field, value: Callable[[Rearm], object]
) -> Case:
    """``column``'s new value per run where the run is active and its ticket is the tick's; the
    value it has everywhere else (one status test for all, then one ticket test per run)."""
    per_run = Case(
        *[When(held, then=Value(value(i))) for i, held in pairs],
        default=F(column),
        output_field=field,
    )
    return Case(When(status__in=ACTIVE, then=per_run), default=F(column), output_field=field)


def is_plain(d: Decision) -> bool:
    """A tick that only counts and re-arms: what ``rearm_all`` can write for many at once."""
    return (
        d.move is None
        and d.ticket is not None
        and d.poll_in_s is not None
        and d.start_in_s is None
        and d.remote_id is None
        and not d.then
        and not d.submitted_calls
        and not d.cancel_remote
        and not d.counters.webhook_events
    )


def rearm_plain(decisions: list[Decision]) -> set[int]:
    """Write the plain ticks among ``decisions`` in one UPDATE; the ``id()`` of those written."""
    now = timezone.now()
    plain = [d for d in decisions if is_plain(d)]
    rearm_all(
        [
            Rearm(
                d.run_id,
                d.ticket,
                now + timedelta(seconds=d.poll_in_s),
                d.attempt,
                d.counters.api_calls,
                d.counters.polls,
                d.errors,
            )
            for d in plain
            if d.ticket is not None and d.poll_in_s is not None
        ]
    )
    return {id(d) for d in plain}


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
