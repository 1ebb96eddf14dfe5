"""Tracking a run: start it, poll it on a countdown, expire it. Plain functions; tasks call these.

Polls are tickets. ``Run.poll_generation`` names the one poll allowed to run next; a poll claims
its ticket with a compare-and-set that also advances it, so a redelivered or duplicated poll
(Redis visibility timeout, a re-armed run, a webhook wake) finds the ticket gone and exits
without calling the API. Whoever advances the ticket owns the next arming.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from . import budget, metrics
from .backends import RemoteState, get_backend
from .errors import classify
from .models import Run
from .schedule import SAFETY_NET, Schedule, next_delay
from .states import transition
from .status import ACTIVE, TERMINAL, EventSource, RunStatus, Strategy

log = logging.getLogger(__name__)


def poll_schedule(strategy: str) -> Schedule:
    """The schedule for a run's strategy, from settings."""
    if strategy == Strategy.WEBHOOK:
        return Schedule(
            base=getattr(settings, "RUNS_SAFETY_NET_BASE_S", SAFETY_NET.base),
            factor=getattr(settings, "RUNS_SAFETY_NET_FACTOR", SAFETY_NET.factor),
            cap=getattr(settings, "RUNS_SAFETY_NET_CAP_S", SAFETY_NET.cap),
            jitter=settings.RUNS_POLL_JITTER,
        )
    return Schedule(
        base=settings.RUNS_POLL_BASE_S,
        factor=settings.RUNS_POLL_FACTOR,
        cap=settings.RUNS_POLL_CAP_S,
        jitter=settings.RUNS_POLL_JITTER,
    )


def _remaining_s(run: Run) -> float | None:
    if run.deadline_at is None:
        return None
    return (run.deadline_at - timezone.now()).total_seconds()


def _count_calls(run_id: int, calls: int = 1, *, poll: bool = False, kind: str = "") -> None:
    metrics.count_api_call(kind or ("retrieve" if poll else "create"), calls)
    Run.objects.filter(pk=run_id).update(
        api_calls=F("api_calls") + calls, polls=F("polls") + (1 if poll else 0)
    )


# --- arming polls --------------------------------------------------------------------------------


def arm(
    run_id: int,
    generation: int,
    delay: float,
    *,
    attempt: int,
    api_calls: int = 0,
    polls: int = 0,
) -> bool:
    """Schedule the poll holding ticket ``generation`` in ``delay`` seconds.

    Does nothing when the ticket moved on meanwhile (a webhook or the sweep re-armed the run):
    then that writer owns the schedule and one queued poll is enough. ``api_calls`` and ``polls``
    are counted in the same UPDATE (a poll tick's one write), or on their own if it matched none.
    """
    from .tasks import poll_run

    counters: dict[str, Any] = {}
    if api_calls or polls:
        counters = {"api_calls": F("api_calls") + api_calls, "polls": F("polls") + polls}
    updated = Run.objects.filter(pk=run_id, poll_generation=generation, status__in=ACTIVE).update(
        next_poll_at=timezone.now() + timedelta(seconds=delay), poll_attempt=attempt, **counters
    )
    if updated:
        poll_run.apply_async(args=(run_id, generation), countdown=delay)
    elif counters:
        Run.objects.filter(pk=run_id).update(**counters)
    return bool(updated)


def wake(run_id: int, *, generation: int | None = None, webhook_events: int = 0) -> bool:
    """Poll now: take a fresh ticket (so the poll already waiting exits) and enqueue it.

    With the ``generation`` the caller just read, taking the ticket is one compare-and-set; if it
    moved meanwhile, or without one, the ticket is bumped and read back (two queries).
    ``webhook_events`` is counted in the same UPDATE.
    """
    from .tasks import poll_run

    active = Run.objects.filter(pk=run_id, status__in=ACTIVE).exclude(remote_id="")
    now = timezone.now()
    counters: dict[str, Any] = {}
    if webhook_events:
        counters["webhook_events"] = F("webhook_events") + webhook_events
    if generation is not None and active.filter(poll_generation=generation).update(
        poll_generation=generation + 1, next_poll_at=now, **counters
    ):
        poll_run.apply_async(args=(run_id, generation + 1))
        return True
    if not active.update(poll_generation=F("poll_generation") + 1, next_poll_at=now, **counters):
        return False
    fresh = Run.objects.filter(pk=run_id).values_list("poll_generation", flat=True).get()
    poll_run.apply_async(args=(run_id, fresh))
    return True


def claim_poll(run_id: int, generation: int) -> Run | None:
    """Take ticket ``generation``; None when it is not ours (stale, duplicate, run ended)."""
    claimed = (
        Run.objects.filter(pk=run_id, poll_generation=generation, status__in=ACTIVE)
        .exclude(remote_id="")
        .update(poll_generation=generation + 1)
    )
    if not claimed:
        return None
    return Run.objects.select_related("thread").get(pk=run_id)


# --- applying what the API said ------------------------------------------------------------------


def apply_remote_state(run: Run, state: RemoteState, *, source: str) -> str:
    """Move the run to what the server reports (if the state machine allows); the new status.

    ``run`` is the row as the caller just read it. Most poll answers change nothing: those cost
    no query here at all (a status that did not move cannot be a transition).
    """
    if state.status == run.status:
        if run.error_retries:
            Run.objects.filter(pk=run.pk).update(error_retries=0)
        return run.status
    fields: dict[str, Any] = {"remote_id": state.remote_id, "error_retries": 0}
    if state.status in TERMINAL:
        fields.update(
            output_text=state.output_text,
            usage=state.usage,
            remote_completed_at=state.remote_completed_at,
            last_error_code=state.error_code,
            last_error=state.error_message,
        )
    changed = transition(
        run.pk,
        state.status,
        source=source,
        detail={"remote_status": state.remote_status, "remote_id": state.remote_id},
        fields=fields,
        expected=run.status,
    )
    if changed:
        return state.status
    # Refused: a stale answer, or another writer moved the run first. Ask the database.
    Run.objects.filter(pk=run.pk).update(error_retries=0)
    return Run.objects.filter(pk=run.pk).values_list("status", flat=True).get()


def fail(run_id: int, code: str, message: str, *, source: str) -> bool:
    """End a run as failed with a clear reason."""
    return transition(
        run_id,
        RunStatus.FAILED,
        source=source,
        detail={"error": code},
        fields={"last_error_code": code, "last_error": message},
    )


def cancel_remote_quietly(run: Run) -> None:
    """Best-effort remote cancel: a failure is logged, never raised (the run is already ended)."""
    if not run.remote_id:
        return
    try:
        _count_calls(run.pk, kind="cancel")
        get_backend(run.backend).cancel(run)
    except Exception as exc:  # noqa: BLE001 - best effort by design
        log.warning("run %s: remote cancel of %s failed: %s", run.pk, run.remote_id, exc)


def expire(run: Run) -> bool:
    """The run passed its deadline: expire it with a clear error and cancel it remotely."""
    if run.status == RunStatus.REQUIRES_ACTION:
        from .tool_loop import expire_waiting

        return expire_waiting(run)  # names the tool outputs that were never given
    deadline_s = (run.deadline_at - run.created_at).total_seconds() if run.deadline_at else None
    changed = transition(
        run.pk,
        RunStatus.EXPIRED,
        source=EventSource.DEADLINE,
        detail={"last_status": run.status},
        fields={
            "last_error_code": "deadline_exceeded",
            "last_error": (
                f"The run did not finish within its deadline of {deadline_s:.0f} s "
                f"(last status: {run.status}); it was cancelled at OpenAI."
            ),
        },
    )
    if changed:
        cancel_remote_quietly(run)
    return changed


# --- the two steps the tasks run -----------------------------------------------------------------


def start(run_id: int) -> dict[str, Any]:
    """Create the run at OpenAI exactly once, then arm its first poll."""
    from .tasks import start_run

    claimed = Run.objects.filter(
        pk=run_id, status=RunStatus.PENDING, start_claimed_at__isnull=True
    ).update(start_claimed_at=timezone.now())
    if not claimed:
        # A redelivered or duplicated start_run: someone already created (or is creating) it.
        return {"run_id": run_id, "started": False, "reason": "already claimed or not pending"}
    wait = budget.take("create")
    if wait > 0:
        Run.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
            start_claimed_at=None, next_poll_at=timezone.now() + timedelta(seconds=wait)
        )
        start_run.apply_async(args=(run_id,), countdown=wait)
        return {"run_id": run_id, "started": False, "deferred_s": wait}
    run = Run.objects.select_related("thread").get(pk=run_id)
    try:
        state = get_backend(run.backend).create(run)
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        _count_calls(run_id)
        decision = classify(exc, run.error_retries)
        log.warning("run %s: create failed (%s): %s", run_id, decision.code, decision.message)
        if decision.retry and run.error_retries < settings.RUNS_MAX_ERROR_RETRIES:
            # Release the claim so the retried start_run may create it. After a lost answer
            # (timeout) the create may have happened: the retry can then double it; see
            # docs/reliability.md for how often and why we accept it.
            if decision.outcome_unknown:
                log.warning("run %s: the create's outcome is unknown; retrying it", run_id)
            Run.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
                start_claimed_at=None,
                error_retries=F("error_retries") + 1,
                # For a pending run, next_poll_at is "next start attempt": the sweep waits too.
                next_poll_at=timezone.now() + timedelta(seconds=decision.countdown),
            )
            start_run.apply_async(args=(run_id,), countdown=decision.countdown)
            return {"run_id": run_id, "started": False, "retry_in": decision.countdown}
        fail(
            run_id,
            decision.code,
            f"Could not create the run: {decision.message}",
            source=EventSource.CREATE,
        )
        return {"run_id": run_id, "started": False, "error": decision.code}

    delay = next_delay(poll_schedule(run.strategy), 0, remaining_s=_remaining_s(run))
    now = timezone.now()
    Run.objects.filter(pk=run_id).update(
        remote_id=state.remote_id,
        submitted_at=now,
        api_calls=F("api_calls") + state.api_calls,
        # Saved with the id, so a worker killed before the poll is armed leaves an overdue run
        # for the sweep rather than an active run with no poll time at all.
        next_poll_at=now + timedelta(seconds=delay),
    )
    metrics.count_api_call("create", state.api_calls)
    status = apply_remote_state(run, state, source=EventSource.CREATE)
    if status in ACTIVE:
        run.refresh_from_db()
        arm(run_id, run.poll_generation, delay, attempt=0)
        # A webhook may have beaten us here (it arrived before the remote id was saved).
        from .webhook_events import apply_waiting

        apply_waiting(run_id, state.remote_id)
    elif status == RunStatus.CANCELLED and state.status not in TERMINAL:
        # Cancelled by a user while we were creating it: do not leave it running remotely.
        cancel_remote_quietly(run)
    return {"run_id": run_id, "started": True, "remote_id": state.remote_id, "status": status}


def poll(run_id: int, generation: int) -> str:
    """One poll tick: at most one retrieve, then re-arm or stop. Returns what happened."""
    run = claim_poll(run_id, generation)
    if run is None:
        return "skipped"
    metrics.observe_poll_lateness(run.next_poll_at)
    ticket = run.poll_generation
    remaining = _remaining_s(run)
    if remaining is not None and remaining <= 0:
        expire(run)
        return "expired"
    wait = budget.take("poll")
    if wait > 0:
        # Over the shared budget: the same tick again later, never dropped.
        arm(run_id, ticket, wait, attempt=run.poll_attempt)
        return "deferred"
    try:
        state = get_backend(run.backend).retrieve(run)
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        decision = classify(exc, run.error_retries)
        log.warning("run %s: retrieve failed (%s): %s", run_id, decision.code, decision.message)
        _count_calls(run_id, poll=True)
        if decision.retry and run.error_retries < settings.RUNS_MAX_ERROR_RETRIES:
            Run.objects.filter(pk=run_id).update(error_retries=F("error_retries") + 1)
            arm(run_id, ticket, decision.countdown, attempt=run.poll_attempt)
            return "retry"
        fail(
            run_id,
            decision.code,
            f"Could not retrieve the run: {decision.message}",
            source=EventSource.POLL,
        )
        return "failed"
    # state.api_calls: e.g. Assistants reads the answer's messages with the run.
    if state.status == RunStatus.REQUIRES_ACTION:
        from .tool_loop import on_requires_action

        _count_calls(run_id, state.api_calls, poll=True)
        return on_requires_action(run, state, ticket)  # answers the tools, then re-arms
    status = apply_remote_state(run, state, source=EventSource.POLL)
    if status not in ACTIVE:
        _count_calls(run_id, state.api_calls, poll=True)
        return status
    attempt = run.poll_attempt + 1
    delay = next_delay(
        poll_schedule(run.strategy),
        attempt,
        poll_after_ms=state.poll_after_ms,
        remaining_s=_remaining_s(run),
    )
    # The common tick: one UPDATE re-arms the run and counts the call.
    metrics.count_api_call("retrieve", state.api_calls)
    arm(run_id, ticket, delay, attempt=attempt, api_calls=state.api_calls, polls=1)
    return status
