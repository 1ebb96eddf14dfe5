"""Cancelling a run on an operator's or an application's request.

Two halves, so no web request ever waits on OpenAI:

- ``request_cancel(run)`` runs in the request (admin, JSON API, your view). A run that OpenAI has
  not seen yet is cancelled at once; an active one moves to ``cancelling`` and the
  ``runs.cancel_run`` task is enqueued on commit.
- ``send_cancel(run_id)`` is that task's body: one cancel call, the answer applied through the
  state machine, then a wake so the next poll confirms the final status now rather than on the
  schedule. Transient errors retry with a countdown, like every other call.

A start that is creating the run remotely while it is cancelled notices on its own
(``lifecycle.start`` cancels a run that became ``cancelled`` during the create).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from .. import metrics
from ..backends.registry import get_backend
from ..conf import settings
from ..errors import classify
from ..models import Run
from ..status import TERMINAL, EventSource, RunStatus
from . import answers, enqueue, writer
from .decisions import Counters, Decision, Move, Task


def request_cancel(run: Run, *, by: str = "") -> str:
    """Cancel ``run``; the status it has now (``cancelled`` or ``cancelling``).

    Raises ``ValidationError`` (code ``conflict``) when the run already ended, or is a batch's
    (its batch is what can be cancelled): nothing changes.
    """
    if run.batch_id is not None:
        # OpenAI cancels a batch, not one of its lines; a run ends as its batch's files say.
        raise ValidationError(
            f"run {run.pk} belongs to batch {run.batch_id}: cancel the batch", code="conflict"
        )
    detail = {"requested_by": by} if by else {}
    for _ in range(3):  # a status that moves under us (the worker is busy too) is re-read
        run.refresh_from_db(fields=["status", "remote_id"])
        if run.status in TERMINAL:
            raise ValidationError(f"run {run.pk} already ended ({run.status})", code="conflict")
        if run.status == RunStatus.CANCELLING:
            # Asked again: send the cancel again, in case the first one's message was lost (a
            # broker down at the first request); OpenAI answers a repeat the same way.
            writer.enqueue_on_commit(Task(enqueue.CANCEL_RUN, (run.pk,)))
            return run.status
        # Not created at OpenAI yet (or being created: start() cleans that up): cancelled now.
        # Strictly from pending: a start that saved the run as created meanwhile makes this a
        # remote cancel (the loop reads again), not an end that leaves the response running.
        pending = run.status == RunStatus.PENDING
        target = RunStatus.CANCELLED if pending else RunStatus.CANCELLING
        changed, _ = writer.move(
            run.pk,
            Move(target, EventSource.USER, expected=run.status, strict=pending, detail=detail),
        )
        if changed:
            if target == RunStatus.CANCELLING:
                writer.enqueue_on_commit(Task(enqueue.CANCEL_RUN, (run.pk,)))
            return target
    run.refresh_from_db(fields=["status"])
    return run.status


def send_cancel(run_id: int) -> str:
    """The ``runs.cancel_run`` task: ask OpenAI to cancel, apply its answer, wake the poll."""
    run = Run.objects.select_related("thread").filter(pk=run_id).first()
    if run is None or run.status != RunStatus.CANCELLING or not run.remote_id:
        return "skipped"  # ended meanwhile, or a duplicate delivery after the first one worked
    metrics.count_api_call("cancel")
    counters = Counters(api_calls=1)
    try:
        state = get_backend(run.backend).cancel(run)
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        # Safe to repeat and spends nothing: retried as a read is, through an outage.
        decision = classify(exc, run.error_retries, settings.RUNS_MAX_ERROR_RETRIES, reading=True)
        if decision.retry:
            # Never a countdown the broker keeps past RUNS_MAX_COUNTDOWN_S (a Retry-After may
            # ask for 300 s): a cancel sent early meets the same answer and waits again.
            countdown = min(decision.countdown, settings.RUNS_MAX_COUNTDOWN_S)
            writer.apply(
                Decision(
                    run_id,
                    "retry",
                    counters=counters,
                    errors="count",
                    then=(Task(enqueue.CANCEL_RUN, (run_id,), countdown=countdown),),
                )
            )
            return "retry"
        # The server will not cancel (it already ended, say): the poll learns how it ended.
        writer.count(run_id, counters)
        writer.wake(run_id)
        return "refused"
    change = None
    if state is not None and state.status != run.status:
        change = answers.move_to(run, state, EventSource.USER)
    writer.apply(Decision(run_id, "cancel_sent", move=change, counters=counters))
    writer.wake(run_id)  # confirms the final status now; exits at once if already terminal
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).get()
