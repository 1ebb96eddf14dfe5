"""The ``ToolCall`` rows of a ``requires_action`` round: recording, claiming, answering.

Every write to a tool call's state lives here, each a compare-and-set or done under the run's
row lock, so two tasks (a poll and a person's answer, two redelivered tool tasks) never both act:

- a call is *executed* by whoever moves it ``pending -> running`` (or takes over a ``running``
  call whose worker died: older than its timeout plus a grace);
- a round is *submitted* by whoever stamps ``submitted_at`` under the run's row lock; the stamp is
  a claim with an age, and a claim older than ``RUNS_CLAIM_TIMEOUT_S`` belonged to a worker that
  died before the answer was saved: it is released (here when a tick meets it, and
  by the sweep), so no round waits on a dead claim.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from .. import tool_runner
from ..backends.base import RemoteState
from ..conf import settings
from ..models import Run, ToolCall
from ..status import RunStatus
from ..tools import get_tool

State = ToolCall.State
#: Calls whose output we still owe.
OWED = (State.PENDING, State.RUNNING, State.MANUAL)
#: Calls whose output is ready to submit.
ANSWERED = (State.SUCCEEDED, State.ERROR)
#: Added to a tool's timeout before a running call counts as abandoned by its worker.
GRACE_S = 30.0


class Step(enum.Enum):
    """What a round needs next, decided under the run's row lock."""

    RUN_TOOLS = "tools_dispatched"
    TOOLS_RUNNING = "tools_running_elsewhere"
    WAIT_MANUAL = "waiting_for_manual_output"
    SUBMIT = "submit"
    SENT = "outputs_already_sent"
    NOT_WAITING = "run_not_waiting"


@dataclass(frozen=True)
class RoundState:
    step: Step
    calls: list[ToolCall]
    #: The claim taken was a dead worker's: the outputs may have reached OpenAI already.
    resubmit: bool = False


def record(run: Run, state: RemoteState) -> list[ToolCall]:
    """The rows for the calls in ``state``, creating the ones seen for the first time.

    Unseen call ids form a new round. Two ticks racing here insert the same rows; the unique
    (run, call_id) constraint keeps one of each.
    """
    ids = [c.call_id for c in state.tool_calls]
    known = {c.call_id: c for c in ToolCall.objects.filter(run=run, call_id__in=ids)}
    unseen = [c for c in state.tool_calls if c.call_id not in known]
    if unseen:
        if known:
            round_no = max(c.round for c in known.values())
        else:
            round_no = (latest_round(run.pk) or 0) + 1
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


def latest_round(run_id: int) -> int | None:
    return ToolCall.objects.filter(run_id=run_id).aggregate(last=Max("round"))["last"]


def owed_calls(run: Run) -> list[ToolCall]:
    """The calls of the run's latest round whose outputs are still owed."""
    return list(ToolCall.objects.filter(run=run, round=latest_round(run.pk), state__in=OWED))


def _is_manual(run: Run, name: str) -> bool:
    registered = get_tool(name)
    return registered is not None and registered.manual and name in (run.tools or [])


def tool_timeout_s(name: str) -> float:
    registered = get_tool(name)
    return tool_runner.timeout_for(registered) if registered else 0.0


def _abandoned(call: ToolCall, now: datetime) -> bool:
    started = call.started_at or now
    return now - started > timedelta(seconds=tool_timeout_s(call.name) + GRACE_S)


def submit_claim_timeout() -> timedelta:
    """How old a submit claim may be before it is released: ``RUNS_CLAIM_TIMEOUT_S``, the same
    as a start claim's, which must exceed the create timeout (no submit can still be running)."""
    return timedelta(seconds=settings.RUNS_CLAIM_TIMEOUT_S)


# --- a round's next step --------------------------------------------------------------------------


def next_step(run_id: int, round_no: int) -> RoundState:
    """Decide under the run's row lock, so a person's answer and a poll cannot both submit.

    ``SUBMIT`` comes with the claim taken: the round's calls are stamped ``submitted_at``.
    """
    now = timezone.now()
    with transaction.atomic():
        status = (
            Run.objects.select_for_update().filter(pk=run_id).values_list("status", flat=True).get()
        )
        if status != RunStatus.REQUIRES_ACTION:
            return RoundState(Step.NOT_WAITING, [])
        calls = list(ToolCall.objects.filter(run_id=run_id, round=round_no))
        running = [c for c in calls if c.state == State.RUNNING]
        if any(c.state == State.PENDING for c in calls) or any(_abandoned(c, now) for c in running):
            return RoundState(Step.RUN_TOOLS, calls)
        if any(c.state == State.MANUAL for c in calls):
            return RoundState(Step.WAIT_MANUAL, calls)
        if running:
            return RoundState(Step.TOOLS_RUNNING, calls)
        if not calls or any(c.state == State.SUBMITTED for c in calls):
            return RoundState(Step.SENT, calls)
        claims = [c.submitted_at for c in calls if c.submitted_at is not None]
        if claims and min(claims) > now - submit_claim_timeout():
            return RoundState(Step.SENT, calls)  # another task is submitting it right now
        ToolCall.objects.filter(pk__in=[c.pk for c in calls]).update(submitted_at=now)
        # A call counted as sent before: its worker died, or the sweep released its claim.
        return RoundState(Step.SUBMIT, calls, resubmit=any(c.submit_attempts for c in calls))


def dispatch_wait_s(calls: Sequence[ToolCall]) -> float:
    """After dispatching a round's tools: when a tick should look for a lost tool task."""
    automatic = [c for c in calls if c.state != State.MANUAL]
    return max([tool_timeout_s(c.name) for c in automatic] + [0.0]) + GRACE_S + 1.0


def wait_for_running_s(calls: Sequence[ToolCall]) -> float:
    """Until the latest running call would count as abandoned (when a tick should look again)."""
    now = timezone.now()
    due = [
        (c.started_at or now) + timedelta(seconds=tool_timeout_s(c.name) + GRACE_S) - now
        for c in calls
        if c.state == State.RUNNING
    ]
    return max([d.total_seconds() for d in due] + [0.0]) + 1.0


# --- executing ------------------------------------------------------------------------------------


def claim_for_execution(run_id: int, round_no: int) -> list[ToolCall]:
    """The round's automatic calls this task may execute (each taken by compare-and-set)."""
    now = timezone.now()
    claimed: list[ToolCall] = []
    for call in ToolCall.objects.filter(
        run_id=run_id, round=round_no, state__in=(State.PENDING, State.RUNNING)
    ):
        if call.state == State.RUNNING and not _abandoned(call, now):
            continue
        if ToolCall.objects.filter(pk=call.pk, state=call.state, started_at=call.started_at).update(
            state=State.RUNNING, started_at=now
        ):
            claimed.append(call)
    return claimed


def save_outcomes(calls: Sequence[ToolCall], outcomes: Sequence[tool_runner.Outcome]) -> None:
    for call, outcome in zip(calls, outcomes, strict=True):
        ToolCall.objects.filter(pk=call.pk, state=State.RUNNING).update(
            state=State.SUCCEEDED if outcome.ok else State.ERROR,
            output=outcome.output,
            error=outcome.error,
            finished_at=timezone.now(),
        )


def round_answered(run_id: int, round_no: int) -> bool:
    """Every call of the round has its output (none pending, running or manual)."""
    return not ToolCall.objects.filter(run_id=run_id, round=round_no, state__in=OWED).exists()


# --- submitting -----------------------------------------------------------------------------------


def count_submission(calls: Sequence[ToolCall]) -> None:
    """Just before the request leaves: a second count on a call means an answer was lost."""
    ToolCall.objects.filter(pk__in=[c.pk for c in calls]).update(
        submit_attempts=F("submit_attempts") + 1
    )


def release_claim(calls: Sequence[ToolCall]) -> None:
    ToolCall.objects.filter(pk__in=[c.pk for c in calls], state__in=ANSWERED).update(
        submitted_at=None
    )


def fail_owed(calls: Sequence[ToolCall], error: str) -> None:
    ToolCall.objects.filter(pk__in=[c.pk for c in calls], state__in=OWED).update(
        state=State.ERROR, error=error
    )


def release_abandoned_claims(now: datetime | None = None, limit: int = 1000) -> list[int]:
    """The sweep's half: release submit claims no live worker holds; the runs to wake."""
    cutoff = (now or timezone.now()) - submit_claim_timeout()
    stale = list(
        ToolCall.objects.filter(
            state__in=ANSWERED,
            submitted_at__lt=cutoff,
            run__status=RunStatus.REQUIRES_ACTION,
        ).values_list("pk", "run_id")[:limit]
    )
    if not stale:
        return []
    ToolCall.objects.filter(pk__in=[pk for pk, _ in stale], submitted_at__lt=cutoff).update(
        submitted_at=None
    )
    return sorted({run_id for _, run_id in stale})


# --- a person's answer ----------------------------------------------------------------------------


def give_output(run_id: int, call_id: str, output: str) -> tuple[ToolCall, bool]:
    """Record a manual tool's output under the run's row lock; (the call, round now answered).

    Raises ``LookupError`` / ``ValueError`` with a message for a call that does not exist, a run
    not waiting, or a call already answered; nothing changes then.
    """
    with transaction.atomic():
        status = (
            Run.objects.select_for_update().filter(pk=run_id).values_list("status", flat=True).get()
        )
        call = ToolCall.objects.filter(run_id=run_id, call_id=call_id).first()
        if call is None:
            raise LookupError(f"run {run_id} has no tool call {call_id!r}")
        if status != RunStatus.REQUIRES_ACTION:
            raise ValueError(f"run {run_id} is {status}, not waiting for tool outputs")
        if call.state != State.MANUAL:
            raise ValueError(
                f"tool call {call_id} of run {run_id} was already answered ({call.state})"
            )
        now = timezone.now()
        ToolCall.objects.filter(pk=call.pk).update(
            state=State.SUCCEEDED, output=output, started_at=now, finished_at=now
        )
        answered = round_answered(run_id, call.round)
    call.refresh_from_db()
    return call, answered
