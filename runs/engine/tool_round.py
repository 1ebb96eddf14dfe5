"""``requires_action`` is a loop: record the calls, run the tools, submit once, poll again.

A poll tick that finds the run waiting for tool outputs hands the answer to ``on_answer``, which,
holding that tick's ticket, decides (``tool_calls.next_step``, under the run's row lock):

1. past ``RUNS_MAX_TOOL_ROUNDS`` rounds: the run fails with a clear error;
2. automatic calls not yet run: the ``runs.execute_tool_calls`` task runs them (its own task,
   which ``task_routes`` can send to a queue of its own: user code never runs inside a poll) and,
   once the round is answered, enqueues ``runs.resume_tool_round``; the tick re-arms late enough
   to only catch a lost tool task;
3. a manual call owed: wait, with one cheap poll every ``RUNS_TOOL_WAIT_POLL_S`` (sooner at the
   deadline or the API's ``expires_at``) until a person's answer enqueues the resume;
4. every output in: claim the round and submit it in one call, then poll on from the schedule's
   start. A claim left by a worker that died mid-submit is taken over once it is older than the
   submit's timeout; on Responses that resubmission may create a second response (the first
   one's answer was lost), which is counted on the call (``submit_attempts``) like a lost create.

An answer that still shows calls we already submitted (Assistants, for a moment after a submit) is
an old answer: not applied, nothing resubmitted.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .. import budget, deadline, metrics, tool_runner
from ..backends.base import RemoteState, ToolOutput
from ..backends.registry import get_backend
from ..conf import settings
from ..models import Run, ToolCall
from ..schedule import next_delay, schedule_for
from ..status import ACTIVE, EventSource, RunStatus
from . import answers, enqueue, tool_calls, writer
from .decisions import Counters, Decision, Move, Task
from .tool_calls import State, Step

log = logging.getLogger(__name__)


def on_answer(run: Run, state: RemoteState, ticket: int, counters: Counters) -> Decision:
    """A poll saw the run waiting for tool outputs: the tick's decision."""
    calls = tool_calls.record(run, state)
    if calls and all(c.state == State.SUBMITTED for c in calls):
        # Outputs we already sent and the API has not caught up yet: an old answer.
        return _poll_later(run, ticket, "outputs_already_sent", counters, run.poll_attempt + 1)
    status = run.status
    if status != RunStatus.REQUIRES_ACTION:
        change = answers.move_to(run, state, EventSource.POLL)
        moved, status = writer.move(run.pk, change)
        run.status = status
        if moved and "round_usage" in change.fields:  # a submit in this tick prices it too
            run.round_usage = change.fields["round_usage"]
    if status == RunStatus.CANCELLING and not _remote_waits(run):
        return _cancelled_here(run, calls, counters)
    if status != RunStatus.REQUIRES_ACTION or not calls:
        # Cancelling or ended meanwhile (whoever moved it owns what follows), or an action we
        # cannot answer: keep polling while active so the deadline still applies.
        if status in ACTIVE:
            return _poll_later(run, ticket, status, counters, run.poll_attempt + 1)
        return Decision(run.pk, status, counters=counters)
    round_no = calls[0].round
    if round_no > settings.RUNS_MAX_TOOL_ROUNDS:
        return _too_many_rounds(run, state, calls, counters)
    return advance(run, ticket, round_no, expires_at=state.expires_at, counters=counters)


def advance(
    run: Run,
    ticket: int,
    round_no: int,
    *,
    expires_at: datetime | None = None,
    counters: Counters | None = None,
) -> Decision:
    """What the round needs next, as the tick's decision (submitting it when it is ready)."""
    counters = counters or Counters()
    current = tool_calls.next_step(run.pk, round_no)
    step = current.step
    if step is Step.SUBMIT:
        return _submit(run, ticket, round_no, current.calls, counters, current.resubmit)
    then: tuple[Task, ...] = ()
    if step is Step.RUN_TOOLS:
        delay = tool_calls.dispatch_wait_s(current.calls)
        then = (Task(enqueue.EXECUTE_TOOL_CALLS, (run.pk, round_no)),)
    elif step is Step.TOOLS_RUNNING:
        delay = tool_calls.wait_for_running_s(current.calls)
    elif step is Step.WAIT_MANUAL:
        delay = float(settings.RUNS_TOOL_WAIT_POLL_S)
        if expires_at is not None:
            delay = min(delay, (expires_at - timezone.now()).total_seconds() + 0.25)
    else:
        # SENT (another task is submitting it) or NOT_WAITING (the run moved on): look again soon.
        return _poll_later(run, ticket, step.value, counters, 0)
    return Decision(
        run.pk,
        step.value,
        ticket=ticket,
        poll_in_s=deadline.cap_delay(run, delay),
        counters=counters,
        then=then,
    )


def execute(run_id: int, round_no: int) -> str:
    """The ``runs.execute_tool_calls`` task: run the round's automatic calls nobody is running.

    Each call is taken by compare-and-set, so a duplicated task runs nothing twice; a call runs
    again only when its worker died mid-execution. Tools receive no retries and must be
    idempotent by call id (docs/tools.md).
    """
    run = Run.objects.filter(pk=run_id).only("pk", "status", "tools").first()
    if run is None or run.status != RunStatus.REQUIRES_ACTION:
        return "skipped"
    claimed = tool_calls.claim_for_execution(run_id, round_no)
    if claimed:
        outcomes = tool_runner.execute_many(
            [tool_runner.Request(c.name, c.arguments, c.call_id) for c in claimed],
            allowed=run.tools or [],
        )
        tool_calls.save_outcomes(claimed, outcomes)
    with transaction.atomic():
        # A person's last output is written under this lock (``tool_calls.give_output``), which
        # sees only committed outcomes: waiting for it here, one of us sees the other's.
        Run.objects.select_for_update().filter(pk=run_id).values_list("pk").first()
        answered = tool_calls.round_answered(run_id, round_no)
    if not answered:
        return "waiting"
    writer.apply(Decision(run_id, "answered", then=(Task(enqueue.RESUME_TOOL_ROUND, (run_id,)),)))
    return "answered"


def resume(run_id: int) -> str:
    """The ``runs.resume_tool_round`` task: the round's outputs are all in, submit them now.

    Takes a fresh ticket, so the poll waiting meanwhile exits without an API call.
    """
    ticket = writer.take_ticket(run_id, RunStatus.REQUIRES_ACTION)
    if ticket is None:
        return "skipped"
    run = Run.objects.select_related("thread").get(pk=run_id)
    round_no = tool_calls.latest_round(run_id)
    if round_no is None:
        decision = _poll_later(run, ticket, "no_tool_calls", Counters(), 0)
    else:
        decision = advance(run, ticket, round_no)
    return answers.conclude(run, decision)


def give_output(run: Run, call_id: str, output: str) -> ToolCall:
    """A person's output for a manual call; the last one owed resumes the round on commit."""
    call, answered = tool_calls.give_output(run.pk, call_id, output)
    if answered:
        writer.enqueue_on_commit(Task(enqueue.RESUME_TOOL_ROUND, (run.pk,)))
    return call


# --- submitting -----------------------------------------------------------------------------------


def _submit(
    run: Run,
    ticket: int,
    round_no: int,
    calls: list[ToolCall],
    counters: Counters,
    resubmit: bool,
) -> Decision:
    """One API call with every output of the round; then the run goes on and is polled again."""
    wait = budget.take("create")  # a waiting run goes first, like a create
    if wait > 0:
        # Over budget: try the *submit* again when a token is due (a poll in between would spend
        # that token on a retrieve and defer the submit for ever on a small budget). The poll
        # armed behind it only matters if that task is lost: the resume takes a fresh ticket.
        tool_calls.release_claim(calls)
        # Our own wait for a budget token, not the model's: the strategy's schedule, no window.
        safety = wait + schedule_for(run.strategy).cap
        # Never a countdown the broker keeps past RUNS_MAX_COUNTDOWN_S: a resume sent early asks
        # the budget again.
        resume_in = min(wait, settings.RUNS_MAX_COUNTDOWN_S)
        return Decision(
            run.pk,
            "deferred",
            ticket=ticket,
            poll_in_s=deadline.cap_delay(run, safety),
            counters=counters,
            then=(Task(enqueue.RESUME_TOOL_ROUND, (run.pk,), countdown=resume_in),),
        )
    backend = get_backend(run.backend)
    if resubmit:
        log.warning(
            "run %s: round %d's submit claim was abandoned by a dead worker; submitting again%s",
            run.pk,
            round_no,
            " (may create a second response)"
            if backend.capabilities.submit_creates_remote_object
            else "",
        )
    tool_calls.count_submission(calls)
    metrics.count_api_call("submit_tool_outputs")
    counters = counters + Counters(api_calls=1)
    try:
        state = backend.submit_tool_outputs(
            run, [ToolOutput(call_id=c.call_id, output=c.output) for c in calls]
        )
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        # Release the claim: a retried tick finds the round unsubmitted and submits it.
        tool_calls.release_claim(calls)
        return answers.decide_error(
            run,
            exc,
            ticket,
            counters,
            what=f"submit the tool outputs of round {round_no} of",
            source=EventSource.TOOL,
        )
    counters = counters + Counters(api_calls=state.api_calls - 1)
    if state.status == RunStatus.REQUIRES_ACTION:
        # We owe nothing now, whatever this answer says (Assistants lags behind a submit).
        state = replace(state, status=RunStatus.IN_PROGRESS, tool_calls=())
    log.info("run %s: submitted %d tool output(s) of round %d", run.pk, len(calls), round_no)
    # On Responses the outputs start a new background response: a window of its own.
    new_response = backend.capabilities.submit_creates_remote_object
    later = deadline.for_new_response(run) if new_response else None
    if later is not None:
        run.deadline_at = later  # the next poll is capped by the new deadline, not the old one
    decision = answers.decide_answer(
        run, state, ticket, counters, source=EventSource.TOOL, attempt=0
    )
    if later is not None and decision.move is not None:
        move = replace(decision.move, fields={**decision.move.fields, "deadline_at": later})
        decision = replace(decision, move=move)
    return replace(decision, submitted_calls=tuple(c.pk for c in calls))


def _too_many_rounds(
    run: Run, state: RemoteState, calls: list[ToolCall], counters: Counters
) -> Decision:
    limit = settings.RUNS_MAX_TOOL_ROUNDS
    tool_calls.fail_owed(calls, f"not run: the run exceeded {limit} tool rounds")
    asked = ", ".join(f"{c.name} ({c.call_id})" for c in calls)
    decision = answers.fail(
        run,
        "tool_rounds_exceeded",
        f"The model asked for tools again after {limit} rounds (RUNS_MAX_TOOL_ROUNDS = {limit}); "
        f"the run was stopped. Last calls asked for: {asked}.",
        source=EventSource.TOOL,
        counters=counters,
    )
    # The remote run itself waits (Assistants): release it.
    return replace(decision, cancel_remote=state.remote_status == "requires_action")


def _remote_waits(run: Run) -> bool:
    return get_backend(run.backend).capabilities.remote_waits_for_tool_outputs


def _cancelled_here(run: Run, calls: list[ToolCall], counters: Counters) -> Decision:
    """A ``cancelling`` run whose response ended asking for tools (Responses): nothing runs at
    OpenAI any more, whose cancel answers that the response already completed, so the cancel
    ends the run here. Without this the run polled on, ``cancelling``, until its deadline."""
    tool_calls.fail_owed(calls, "not run: the run was cancelled")
    move = Move(
        RunStatus.CANCELLED,
        EventSource.POLL,
        expected=RunStatus.CANCELLING,
        detail={"reason": "cancelled while waiting for tool outputs"},
    )
    return Decision(run.pk, RunStatus.CANCELLED, move=move, counters=counters)


def _poll_later(run: Run, ticket: int, outcome: str, counters: Counters, attempt: int) -> Decision:
    schedule = schedule_for(run.strategy, run.completion_window)
    delay = next_delay(schedule, attempt, remaining_s=deadline.remaining_s(run))
    return Decision(
        run.pk, outcome, ticket=ticket, poll_in_s=delay, attempt=attempt, counters=counters
    )
