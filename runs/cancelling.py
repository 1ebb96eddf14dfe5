"""Cancelling a run on an operator's or an application's request.

Two halves, so no web request ever waits on OpenAI:

- ``request_cancel(run)`` runs in the request (admin, JSON API, your view). A run that OpenAI has
  not seen yet is cancelled at once; an active one moves to ``cancelling`` and the
  ``runs.cancel_run`` task is enqueued on commit.
- ``send_cancel(run_id)`` is that task's body: one cancel call, the answer applied through the
  state machine, then a wake so the next poll confirms the final status now rather than on the
  schedule. Transient errors retry with a countdown, like every other call.

A start that is creating the run remotely while it is cancelled notices on its own
(``tracking.start`` cancels a run that became ``cancelled`` during the create).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from . import tracking
from .backends import get_backend
from .errors import classify
from .models import Run
from .states import transition
from .status import TERMINAL, EventSource, RunStatus

log = logging.getLogger(__name__)


def request_cancel(run: Run, *, by: str = "") -> str:
    """Cancel ``run``; the status it has now (``cancelled`` or ``cancelling``).

    Raises ``ValidationError`` (code ``conflict``) when the run already ended: nothing changes.
    """
    detail = {"requested_by": by} if by else {}
    for _ in range(3):  # a status that moves under us (the worker is busy too) is re-read
        run.refresh_from_db(fields=["status", "remote_id"])
        if run.status in TERMINAL:
            raise ValidationError(f"run {run.pk} already ended ({run.status})", code="conflict")
        if run.status == RunStatus.CANCELLING:
            return run.status
        if run.status == RunStatus.PENDING:
            # Not created at OpenAI yet (or being created: start() cleans that up).
            if transition(run.pk, RunStatus.CANCELLED, source=EventSource.USER, detail=detail):
                return RunStatus.CANCELLED
            continue
        if transition(run.pk, RunStatus.CANCELLING, source=EventSource.USER, detail=detail):
            from .tasks import cancel_run

            transaction.on_commit(lambda: cancel_run.delay(run.pk))
            return RunStatus.CANCELLING
    run.refresh_from_db(fields=["status"])
    return run.status


def send_cancel(run_id: int) -> str:
    """The ``runs.cancel_run`` task: ask OpenAI to cancel, apply its answer, wake the poll."""
    from .tasks import cancel_run

    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.CANCELLING or not run.remote_id:
        return "skipped"  # ended meanwhile, or a duplicate delivery after the first one worked
    tracking._count_calls(run_id, kind="cancel")
    try:
        state = get_backend(run.backend).cancel(run)
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        decision = classify(exc, run.error_retries)
        log.warning("run %s: cancel failed (%s): %s", run_id, decision.code, decision.message)
        if decision.retry and run.error_retries < settings.RUNS_MAX_ERROR_RETRIES:
            Run.objects.filter(pk=run_id).update(error_retries=F("error_retries") + 1)
            cancel_run.apply_async(args=(run_id,), countdown=decision.countdown)
            return "retry"
        # The server will not cancel (it already ended, say): the poll learns how it ended.
        tracking.wake(run_id)
        return "refused"
    if state is not None:
        tracking.apply_remote_state(run, state, source=EventSource.USER)
    tracking.wake(run_id)  # confirms the final status now; exits at once if already terminal
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).get()
