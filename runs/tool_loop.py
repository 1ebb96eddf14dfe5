"""``requires_action`` is a loop: record the calls, answer them, submit once, poll again.

A poll that finds the run waiting for tool outputs hands the answer to ``on_requires_action``,
which, holding that poll's ticket (see ``tracking``):

1. records each call as a ``ToolCall`` row (unique per run and call id), a new call id set being a
   new *round*; past ``RUNS_MAX_TOOL_ROUNDS`` rounds the run fails with a clear error;
2. executes the automatic tools now, in this task, each bounded by its timeout (``tool_runner``:
   an exception, a timeout, an unknown tool or bad JSON arguments become error *outputs*);
3. if a manual tool is owed, waits: one cheap poll every ``RUNS_TOOL_WAIT_POLL_S`` (sooner at the
   run's deadline or the API's ``expires_at``) until ``services.submit_tool_output`` supplies the
   output and enqueues ``resume`` (the ``runs.resume_tool_round`` task);
4. otherwise claims the round and submits all its outputs in one call, moves the run on
   (``requires_action -> in_progress/queued``, source ``tool``) and arms the next poll at the start
   of the schedule. Nothing sleeps.

Exactly one submission per call id: the claim is a ``submitted_at`` stamp set under the run's row
lock, released only when the call failed. An answer that still shows ``requires_action`` for calls
we already submitted (Assistants does so for a moment after a submit) is an old answer: it is not
applied and nothing is resubmitted.

Every path ends by arming a poll with the caller's ticket or with the run ended: ``arm`` is a
compare-and-set on the ticket, so arming from a stale ticket is harmless and never doubles polls.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from . import budget, metrics, tool_runner
from .backends import RemoteState, get_backend
from .backends.base import ToolOutput
from .errors import classify
from .models import Run, ToolCall
from .schedule import next_delay
from .states import transition
from .status import ACTIVE, Backend, EventSource, RunStatus
from .tools import get_tool
from .tracking import apply_remote_state, arm, cancel_remote_quietly, fail, poll_schedule

log = logging.getLogger(__name__)

State = ToolCall.State
#: Calls whose output we still owe.
OWED = (State.PENDING, State.RUNNING, State.MANUAL)
#: A ``running`` call older than its timeout by this much belonged to a worker that died.
STALE_RUNNING_GRACE_S = 30.0


class Next(enum.Enum):
    """What a round needs next, decided under the run's row lock."""

    SUBMIT = "submit"
    WAIT_MANUAL = "waiting_for_manual_output"
    BUSY = "tools_running_elsewhere"
    SENT = "outputs_already_sent"
    NOT_WAITING = "run_not_waiting"


# --- arming ----------------------------------------------------------------------------------


def _remaining_s(run: Run) -> float | None:
    if run.deadline_at is None:
        return None
    return (run.deadline_at - timezone.now()).total_seconds()


def _arm_poll(run: Run, ticket: int, *, attempt: int, poll_after_ms: int | None = None) -> None:
    delay = next_delay(
        poll_schedule(run.strategy),
        attempt,
        poll_after_ms=poll_after_ms,
        remaining_s=_remaining_s(run),
    )
    arm(run.pk, ticket, delay, attempt=attempt)


def _arm_wait(run: Run, ticket: int, expires_at: datetime | None) -> None:
    """While a person owes an output: look rarely, but exactly at the deadline or expiry."""
    delay = settings.RUNS_TOOL_WAIT_POLL_S
    if expires_at is not None:
        delay = min(delay, (expires_at - timezone.now()).total_seconds() + 0.25)
    remaining = _remaining_s(run)
    if remaining is not None:
        delay = min(delay, remaining + 0.05)
    arm(run.pk, ticket, max(delay, 0.05), attempt=run.poll_attempt)


# --- recording the calls ---------------------------------------------------------------------


def record_calls(run: Run, state: RemoteState) -> list[ToolCall]:
    """The ``ToolCall`` rows for the calls in ``state``, creating the ones seen for the first time.

    Unseen call ids form a new round. Two polls racing here insert the same rows; the unique
    (run, call_id) constraint keeps one of each.
    """
    ids = [c.call_id for c in state.tool_calls]
    known = {c.call_id: c for c in ToolCall.objects.filter(run=run, call_id__in=ids)}
    unseen = [c for c in state.tool_calls if c.call_id not in known]
    if unseen:
        if known:
            round_no = max(c.round for c in known.values())
        else:
            last = ToolCall.objects.filter(run=run).aggregate(last=Max("round"))["last"] or 0
            round_no = last + 1
        ToolCall.objects.bulk_create(
            [
                ToolCall(
                    run=run,
                    call_id=c.call_id,
                    name=c.name[:128],
                    arguments=c.arguments,
                    round=round_no,
                    remote_id=state.remote_id,
                    state=State.MANUAL if _is_manual(run, c.name) else State.PENDING,
                )
                for c in unseen
            ],
            ignore_conflicts=True,
        )
        known = {c.call_id: c for c in ToolCall.objects.filter(run=run, call_id__in=ids)}
    return [known[i] for i in ids if i in known]


def _is_manual(run: Run, name: str) -> bool:
    registered = get_tool(name)
    return registered is not None and registered.manual and name in (run.tools or [])


# --- the loop --------------------------------------------------------------------------------


def on_requires_action(run: Run, state: RemoteState, ticket: int) -> str:
    """A poll saw the run waiting for tool outputs; answer, wait or skip. Returns what happened."""
    calls = record_calls(run, state)
    if calls and all(c.state == State.SUBMITTED for c in calls):
        # Outputs we already sent and the API has not caught up yet: an old answer, not applied.
        Run.objects.filter(pk=run.pk).update(error_retries=0)
        _arm_poll(run, ticket, attempt=run.poll_attempt + 1, poll_after_ms=state.poll_after_ms)
        return Next.SENT.value
    status = apply_remote_state(run, state, source=EventSource.POLL)
    if status != RunStatus.REQUIRES_ACTION or not calls:
        # Cancelling or ended meanwhile (whoever moved it owns what follows), or an action we
        # cannot answer: keep polling while active so the deadline still applies.
        if status in ACTIVE:
            _arm_poll(run, ticket, attempt=run.poll_attempt + 1)
        return status
    round_no = calls[0].round
    if round_no > settings.RUNS_MAX_TOOL_ROUNDS:
        return _too_many_rounds(run, state, calls)
    return work_on_round(run.pk, ticket, round_no, expires_at=state.expires_at)


def work_on_round(
    run_id: int, ticket: int, round_no: int, *, expires_at: datetime | None = None
) -> str:
    """Execute what is pending in the round, then submit it, wait for a person, or re-poll."""
    run = Run.objects.select_related("thread").get(pk=run_id)
    execute_pending(run, round_no)
    decision, calls = _claim_round(run_id, round_no)
    if decision is Next.SUBMIT:
        return _submit(run, ticket, round_no, calls)
    if decision is Next.WAIT_MANUAL:
        _arm_wait(run, ticket, expires_at)
    else:
        # Another task is executing or submitting this round, or the run moved on (arm is a
        # no-op once it ended): look again soon.
        _arm_poll(run, ticket, attempt=0)
    return decision.value


def execute_pending(run: Run, round_no: int) -> None:
    """Run the round's automatic calls nobody is running (each claimed by compare-and-set)."""
    now = timezone.now()
    claimed: list[ToolCall] = []
    for call in ToolCall.objects.filter(
        run=run, round=round_no, state__in=(State.PENDING, State.RUNNING)
    ):
        if call.state == State.RUNNING and not _stale(call, now):
            continue
        if ToolCall.objects.filter(pk=call.pk, state=call.state, started_at=call.started_at).update(
            state=State.RUNNING, started_at=now
        ):
            claimed.append(call)
    if not claimed:
        return
    outcomes = tool_runner.execute_many(
        [tool_runner.Request(c.name, c.arguments) for c in claimed], allowed=run.tools or []
    )
    for call, outcome in zip(claimed, outcomes, strict=True):
        ToolCall.objects.filter(pk=call.pk, state=State.RUNNING).update(
            state=State.SUCCEEDED if outcome.ok else State.ERROR,
            output=outcome.output,
            error=outcome.error,
            finished_at=timezone.now(),
        )


def _stale(call: ToolCall, now: datetime) -> bool:
    registered = get_tool(call.name)
    timeout = tool_runner.timeout_for(registered) if registered else 0.0
    started = call.started_at or now
    return now - started > timedelta(seconds=timeout + STALE_RUNNING_GRACE_S)


def _claim_round(run_id: int, round_no: int) -> tuple[Next, list[ToolCall]]:
    """Decide under the run's row lock, so a person's answer and a poll cannot both submit."""
    with transaction.atomic():
        status = (
            Run.objects.select_for_update().filter(pk=run_id).values_list("status", flat=True).get()
        )
        if status != RunStatus.REQUIRES_ACTION:
            return Next.NOT_WAITING, []
        calls = list(ToolCall.objects.filter(run_id=run_id, round=round_no))
        if any(c.state == State.MANUAL for c in calls):
            return Next.WAIT_MANUAL, calls
        if any(c.state in OWED for c in calls):
            return Next.BUSY, calls
        if not calls or any(c.submitted_at is not None for c in calls):
            return Next.SENT, calls
        now = timezone.now()
        ToolCall.objects.filter(pk__in=[c.pk for c in calls]).update(submitted_at=now)
        return Next.SUBMIT, calls


def _submit(run: Run, ticket: int, round_no: int, calls: list[ToolCall]) -> str:
    """One API call with every output of the round; then the run goes on and is polled again."""
    ids = [c.pk for c in calls]
    wait = budget.take("create")  # a waiting run goes first, like a create
    if wait > 0:
        ToolCall.objects.filter(pk__in=ids).update(submitted_at=None)
        arm(run.pk, ticket, wait, attempt=run.poll_attempt)
        return "deferred"
    Run.objects.filter(pk=run.pk).update(api_calls=F("api_calls") + 1)
    metrics.count_api_call("submit_tool_outputs")
    try:
        state = get_backend(run.backend).submit_tool_outputs(
            run, [ToolOutput(call_id=c.call_id, output=c.output) for c in calls]
        )
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        # Release the claim: the retried poll finds the round unsubmitted and submits it.
        ToolCall.objects.filter(pk__in=ids).update(submitted_at=None)
        decision = classify(exc, run.error_retries)
        log.warning("run %s: submit failed (%s): %s", run.pk, decision.code, decision.message)
        if decision.retry and run.error_retries < settings.RUNS_MAX_ERROR_RETRIES:
            Run.objects.filter(pk=run.pk).update(error_retries=F("error_retries") + 1)
            arm(run.pk, ticket, decision.countdown, attempt=run.poll_attempt)
            return "retry"
        fail(
            run.pk,
            decision.code,
            f"Could not submit the tool outputs of round {round_no}: {decision.message}",
            source=EventSource.TOOL,
        )
        return "failed"
    ToolCall.objects.filter(pk__in=ids).update(state=State.SUBMITTED)
    if state.api_calls > 1:
        Run.objects.filter(pk=run.pk).update(api_calls=F("api_calls") + state.api_calls - 1)
        metrics.count_api_call("retrieve", state.api_calls - 1)
    if state.status == RunStatus.REQUIRES_ACTION:
        # We owe nothing now, whatever this answer says (Assistants lags behind a submit).
        state = replace(state, status=RunStatus.IN_PROGRESS, tool_calls=())
    status = apply_remote_state(run, state, source=EventSource.TOOL)
    log.info("run %s: submitted %d tool output(s) of round %d", run.pk, len(calls), round_no)
    if status in ACTIVE:
        _arm_poll(run, ticket, attempt=0, poll_after_ms=state.poll_after_ms)
    return status


def _too_many_rounds(run: Run, state: RemoteState, calls: list[ToolCall]) -> str:
    limit = settings.RUNS_MAX_TOOL_ROUNDS
    ToolCall.objects.filter(pk__in=[c.pk for c in calls], state__in=OWED).update(
        state=State.ERROR, error=f"not run: the run exceeded {limit} tool rounds"
    )
    asked = ", ".join(f"{c.name} ({c.call_id})" for c in calls)
    fail(
        run.pk,
        "tool_rounds_exceeded",
        f"The model asked for tools again after {limit} rounds (RUNS_MAX_TOOL_ROUNDS = {limit}); "
        f"the run was stopped. Last calls asked for: {asked}.",
        source=EventSource.TOOL,
    )
    if state.remote_status == "requires_action":
        cancel_remote_quietly(run)  # the remote run itself waits (Assistants): release it
    return RunStatus.FAILED


# --- a person answered; the deadline --------------------------------------------------------


def resume(run_id: int) -> str:
    """The ``runs.resume_tool_round`` task: the round's outputs are all in, submit them now.

    Takes a fresh ticket, so the poll waiting for the manual output exits without an API call.
    """
    taken = (
        Run.objects.filter(pk=run_id, status=RunStatus.REQUIRES_ACTION)
        .exclude(remote_id="")
        .update(poll_generation=F("poll_generation") + 1)
    )
    if not taken:
        return "skipped"
    ticket = Run.objects.filter(pk=run_id).values_list("poll_generation", flat=True).get()
    round_no = ToolCall.objects.filter(run_id=run_id).aggregate(last=Max("round"))["last"]
    if round_no is None:
        run = Run.objects.get(pk=run_id)
        _arm_poll(run, ticket, attempt=0)
        return "no_tool_calls"
    return work_on_round(run_id, ticket, round_no)


def owed_calls(run: Run) -> list[ToolCall]:
    """The calls of the run's latest round whose outputs are still owed."""
    last = ToolCall.objects.filter(run=run).aggregate(last=Max("round"))["last"]
    return list(ToolCall.objects.filter(run=run, round=last, state__in=OWED))


def expire_waiting(run: Run) -> bool:
    """Deadline passed while the run waited for tool outputs: say which ones, then expire it."""
    deadline_s = (run.deadline_at - run.created_at).total_seconds() if run.deadline_at else 0
    owed = owed_calls(run)
    names = ", ".join(f"{c.name} ({c.call_id}, {c.state})" for c in owed) or "none recorded"
    # A Responses run that waits has nothing running remotely (the response completed).
    remote_waits = run.backend == Backend.ASSISTANTS
    message = (
        f"The run waited for tool outputs past its deadline of {deadline_s:.0f} s; "
        f"still owed: {names}." + (" It was cancelled at OpenAI." if remote_waits else "")
    )
    changed = transition(
        run.pk,
        RunStatus.EXPIRED,
        source=EventSource.DEADLINE,
        detail={"last_status": run.status, "owed_tool_calls": [c.call_id for c in owed]},
        fields={"last_error_code": "deadline_exceeded", "last_error": message},
    )
    if changed and remote_waits:
        cancel_remote_quietly(run)
    return changed
