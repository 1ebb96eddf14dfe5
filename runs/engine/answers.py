"""How the API's answer, or its error, becomes a tick's decision; and concluding a tick.

Pure but for reading settings: given the run as read and what the API said, these return values
(``Move``, ``Decision``) and write nothing. ``conclude`` is the one exit of every tick: it hands
the decision to the writer and, for a run that ended here but may still run at OpenAI, sends a
best-effort cancel.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from .. import deadline, metrics, pricing, structured
from ..backends.base import RemoteState
from ..backends.registry import get_backend
from ..conf import settings
from ..errors import classify
from ..models import Run
from ..redact import redact
from ..schedule import next_delay, schedule_for
from ..status import ACTIVE, TERMINAL, RunStatus, Strategy
from . import events, writer
from .decisions import Counters, Decision, Move, Task
from .enqueue import CANCEL_RUN

log = logging.getLogger(__name__)


def move_to(run: Run, state: RemoteState, source: str) -> Move:
    """The status change the answer asks for, with the output, errors and cost of an end.

    A structured run (``response_format``) that completed is completed only if its output
    parses and matches the schema: otherwise it moves to ``failed`` with the first violation,
    its text kept for inspection (runs/structured.py).
    """
    fields: dict[str, Any] = {"remote_id": state.remote_id, "error_retries": 0}
    target = state.status
    rounds = _rounds(run)
    if state.status == RunStatus.REQUIRES_ACTION and rounds is not None and state.usage:
        # This response ends here: its successor (the outputs' response) has usage of its own.
        # Keyed by response id: seeing the same response again (a manual wait) counts it once.
        fields["round_usage"] = {**rounds, state.remote_id: state.usage}
    if state.status in TERMINAL:
        earlier = [u for rid, u in (rounds or {}).items() if rid != state.remote_id]
        usage = total_usage([*earlier, state.usage]) if earlier else state.usage
        fields.update(
            output_text=state.output_text,
            usage=usage,
            remote_completed_at=state.remote_completed_at,
            last_error_code=state.error_code,
            last_error=state.error_message,
            cost=pricing.cost_of(run.model, usage, run.mode),
        )
    if state.status == RunStatus.COMPLETED and run.response_format:
        checked = structured.check(run.response_format, state.output_text)
        if checked.ok:
            fields["parsed_output"] = checked.parsed
        else:
            target = RunStatus.FAILED
            fields.update(last_error_code=checked.error_code, last_error=checked.error)
    detail = {"remote_status": state.remote_status, "remote_id": state.remote_id}
    if target != state.status:
        detail["error"] = fields["last_error_code"]
    return Move(target, source, expected=run.status, fields=fields, detail=detail)


def _rounds(run: Run) -> dict[str, Any] | None:
    """The usage of the run's earlier responses, where each tool round is a response of its own
    (``submit_creates_remote_object``: Responses); None where the run's usage covers every
    round already (Assistants)."""
    if not get_backend(run.backend).capabilities.submit_creates_remote_object:
        return None
    return dict(run.round_usage or {})


def total_usage(usages: list[Any]) -> dict[str, Any] | None:
    """Several responses' usage added up, key by key (nested details too); None for none."""
    total: dict[str, Any] = {}
    for usage in usages:
        if isinstance(usage, dict):
            _add(total, usage)
    return total or None


def _add(into: dict[str, Any], usage: dict[str, Any]) -> None:
    for key, value in usage.items():
        if isinstance(value, dict):
            if not isinstance(into.get(key), dict):
                into[key] = {}
            _add(into[key], value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            # An earlier round's count may be None (the SDK dumps a field a server left out
            # as None): counted as 0, never a TypeError in the tick that adds them up.
            before = into.get(key)
            into[key] = (before if isinstance(before, int | float) else 0) + value
        elif key not in into:
            into[key] = value


def decide_answer(
    run: Run,
    state: RemoteState,
    ticket: int,
    counters: Counters,
    *,
    source: str,
    attempt: int,
) -> Decision:
    """A status the run may move to, then poll again on the schedule unless it ended."""
    change = None if state.status == run.status else move_to(run, state, source)
    if state.status not in ACTIVE:
        outcome = change.to_status if change is not None else state.status
        return Decision(run.pk, outcome, ticket=ticket, move=change, counters=counters)
    delay = next_delay(
        schedule_for(run.strategy, run.completion_window),
        attempt,
        poll_after_ms=state.poll_after_ms,
        remaining_s=deadline.remaining_s(run),
    )
    return Decision(
        run.pk,
        state.status,
        ticket=ticket,
        move=change,
        poll_in_s=delay,
        attempt=attempt,
        remote_id=state.remote_id if state.remote_id != run.remote_id else None,
        counters=counters,
        errors="reset",
    )


#: The ``what`` of a failed call that only read the run (a tick's retrieve, a batch of them).
READS = ("retrieve", "poll")


def decide_error(
    run: Run,
    exc: BaseException,
    ticket: int | None,
    counters: Counters,
    *,
    what: str,
    source: str,
) -> Decision:
    """One failed call (``what``: "create", "retrieve", "submit the tool outputs of"): the one
    place a failure becomes "try again after the policy's countdown" or "fail with its reason".

    The retry is a poll after the countdown for a tick that holds a ticket, and a start again
    for a start (``ticket`` None).
    """
    decision = classify(
        exc, run.error_retries, settings.RUNS_MAX_ERROR_RETRIES, reading=what in READS
    )
    log.warning("run %s: %s failed (%s): %s", run.pk, what, decision.code, decision.message)
    if not decision.retry:
        failed = fail(
            run, decision.code, f"Could not {what} the run: {decision.message}", source, counters
        )
        if (what == "create" or what.startswith("submit")) and failed.move is not None:
            # Only a run still as read is a create's or a submit's to fail: one cancelled or
            # ended meanwhile, or created by another start after this one's claim timed out, is
            # not (a submit refused because the run is being cancelled is the cancel's to end).
            failed = replace(failed, move=replace(failed.move, expected=run.status, strict=True))
        # We give up on it, OpenAI may not have: a best-effort cancel, so it does not run on.
        return replace(failed, cancel_remote=bool(run.remote_id))
    if decision.outcome_unknown and what != "retrieve":
        # The request may have reached OpenAI: repeating it may make a second remote object
        # (docs/reliability.md says when, and how it is counted).
        log.warning("run %s: the %s's outcome is unknown; it will be sent again", run.pk, what)
    if ticket is not None:
        # A poll never waits past the deadline, which its next tick acts on: a Retry-After of
        # minutes would otherwise expire the run minutes late. (A start is not capped: nothing
        # in it looks at the deadline, so a capped retry would create past it; the sweep
        # expires a pending run once its deadline has passed.)
        countdown = deadline.cap_delay(run, decision.countdown)
        return Decision(
            run.pk, "retry", ticket=ticket, counters=counters, errors="count", poll_in_s=countdown
        )
    return Decision(
        run.pk, "retry", counters=counters, errors="count", start_in_s=decision.countdown
    )


def fail(run: Run, code: str, message: str, source: str, counters: Counters) -> Decision:
    """End the run as failed with a clear reason."""
    return Decision(
        run.pk,
        RunStatus.FAILED,
        move=Move(
            RunStatus.FAILED,
            source,
            detail={"error": code},
            fields={"last_error_code": code, "last_error": message},
        ),
        counters=counters,
    )


def conclude(run: Run, decision: Decision) -> str:
    """Apply the tick's decision; cancel remotely what ended here. Returns the outcome.

    The cancel that follows an end is counted with the end (its call is made only if the end
    was ours), so the counters are final as soon as the terminal status is visible.
    """
    cancelling = decision.cancel_remote and bool(run.remote_id)
    if cancelling:
        decision = replace(decision, counters=decision.counters + Counters(api_calls=1))
    changed = writer.apply(decision)
    if decision.remote_id and run.strategy == Strategy.WEBHOOK:
        # A new remote object (a tool round's submit on Responses): its webhook may have come
        # before its id was saved, as for a start, and would wait for the safety net.
        events.apply_waiting(run.pk, decision.remote_id)
    if cancelling:
        if changed:
            cancel_remote_quietly(run, counted=True)
        else:
            writer.count(run.pk, Counters(api_calls=-1))  # the end was not ours: no call made
    if decision.submitted_calls and decision.remote_id and not changed:
        _orphaned(run, decision.remote_id)
    return decision.outcome


def _orphaned(run: Run, made: str) -> None:
    """A tool round's submit made a new response (Responses), but its move was refused: the run
    was cancelled or ended while the submit was under way. It keeps the response it had, and
    nothing would follow the new one, which is cancelled at OpenAI. A run still ``cancelling``
    took the new id and gets its cancel again: the first may have reached the response that
    asked for tools, which had completed."""
    status, kept = Run.objects.filter(pk=run.pk).values_list("status", "remote_id").get()
    if status == RunStatus.CANCELLING and kept == made:
        writer.enqueue_now(Task(CANCEL_RUN, (run.pk,)))
    elif status not in ACTIVE and kept != made:
        run.remote_id = made
        cancel_remote_quietly(run)


def cancel_remote_quietly(run: Run, *, counted: bool = False) -> None:
    """Best-effort remote cancel: a failure is logged, never raised (the run is already ended)."""
    if not run.remote_id:
        return
    metrics.count_api_call("cancel")
    if not counted:
        writer.count(run.pk, Counters(api_calls=1))
    try:
        get_backend(run.backend).cancel(run)
    except Exception as exc:  # noqa: BLE001 - best effort by design
        log.warning(
            "run %s: remote cancel of %s failed: %s", run.pk, run.remote_id, redact(repr(exc))
        )
