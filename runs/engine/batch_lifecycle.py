"""The ticks of a batch: ``submit`` uploads and creates it once, ``poll`` looks at it once per
ticket and, at its end, settles its runs; ``send_cancel`` asks OpenAI to stop it.

Tracked like a run (docs/batches.md): one ``runs.poll_batch`` task re-armed with a growing
countdown (``schedule``), woken by ``batch.*`` webhooks, errors retried on the policy's
countdowns (``errors.classify``). Calls are made here; writes go through ``batch_writer`` and
``batch_runs``.

**Nothing sent twice where it can be avoided.** The submit claim keeps two workers from
submitting one batch. A claim taken over after a crash (``batch_writer.submit_claim_s``) may
follow a create whose answer was lost: the input file's id is saved before the create, so a
submit that finds one looks through the newest batches for ours (our batch id in its metadata,
that input file) before creating another, and never uploads twice. A submit that outlived its
claim and comes back second with a batch of its own cancels it.

**What OpenAI ran is not thrown away here.** A batch is given up on past its deadline only once
OpenAI says it is neither ended nor writing its files, and never failed for our downloads.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from .. import budget, metrics
from ..backends import batch_api
from ..backends.batch_api import RemoteBatch
from ..conf import settings
from ..errors import classify
from ..models import Batch
from ..redact import redact
from ..status import BATCH_TERMINAL, BatchStatus, EventSource, RunStatus, Strategy
from . import batch_files, batch_runs, batch_writer, events
from .batch_files import grace_end, next_poll_in, past
from .decisions import Counters

log = logging.getLogger(__name__)

HOP_SLACK_S = 0.5  # a poll this long before the batch's due time is a hop of a long wait
#: Who ends a batch's runs when it ends here; remote statuses: requests running, cancellable.
_SOURCE_OF_END = {BatchStatus.CANCELLED: EventSource.USER, BatchStatus.EXPIRED: "deadline"}
RUNNING = frozenset({BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING})
CANCELLABLE = frozenset({BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS})
WINDING_DOWN = frozenset({BatchStatus.FINALIZING, BatchStatus.CANCELLING})


def submit(batch_id: int) -> dict[str, Any]:
    """Upload the batch's lines and create it at OpenAI, once; then arm its first poll."""
    batch = batch_writer.claim_submit(batch_id)
    if batch is None:
        return {"batch_id": batch_id, "submitted": False, "reason": "claimed, sent or ended"}
    calls = Counters()
    try:
        remote = None
        if batch.input_file_id:
            # An earlier submit got as far as the upload: its create may have reached OpenAI.
            pages = settings.RUNS_BATCH_FIND_PAGES
            remote, listed = batch_api.find(batch.pk, batch.input_file_id, pages)
            calls += _called("batch_list", listed)
        if remote is None and batch.status == BatchStatus.CANCELLING:
            return _end_here(batch, BatchStatus.CANCELLED, calls)
        if remote is None:
            wait = budget.take("create")
            if wait > 0:
                batch_writer.release_submit(batch.pk, batch.submit_claimed_at, wait)
                return {"batch_id": batch_id, "submitted": False, "deferred_s": wait}
            if not batch.input_file_id:
                lines = batch_runs.request_lines(batch.pk)
                if not lines:  # every run was cancelled before the batch was sent
                    return _end_here(batch, BatchStatus.CANCELLED, calls)
                data = batch_files.input_file(lines)
                calls += _called("batch_upload")
                file_id = batch_api.upload(f"runs-batch-{batch.pk}.jsonl", data)
                claim = batch_writer.uploaded(batch.pk, batch.submit_claimed_at, file_id, calls)
                calls = Counters()
                if claim is None:  # taken over: the file is an orphan, never a second batch
                    log.warning("batch %s: submit claim lost during the upload", batch.pk)
                    return {"batch_id": batch_id, "submitted": False, "reason": "claim lost"}
                batch.input_file_id, batch.submit_claimed_at = file_id, claim
            # Counted before it leaves: a worker that dies waiting for the answer made the call.
            batch_writer.save(batch.pk, _called("batch_create"))
            remote = batch_api.create(batch.input_file_id, batch.pk)
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        return _submit_failed(batch, exc, calls)
    # Ours is terminal only once its runs are settled: a batch found already ended is polled now.
    ended = remote.status in BATCH_TERMINAL
    batch.deadline_at = deadline = batch_files.deadline_from(timezone.now())
    delay = 0.0 if ended else next_poll_in(batch, 0)
    status = BatchStatus.FINALIZING if ended else remote.status
    if batch_writer.submitted(batch.pk, remote.remote_id, status, delay, calls, deadline) is None:
        return _saved_by_another(batch.pk, remote.remote_id)
    batch_runs.sent(batch.pk)
    status = Batch.objects.filter(pk=batch.pk).values_list("status", flat=True).get()
    if status == BatchStatus.CANCELLING:
        # Cancelled while we sent it: the cancel task found no remote id to cancel; we have one.
        send_cancel(batch.pk)
    elif batch.strategy == Strategy.WEBHOOK:
        # A batch.* event may have come before the remote id was saved.
        events.apply_waiting_batch(batch.pk, remote.remote_id)
    return {"batch_id": batch_id, "submitted": True, "remote_id": remote.remote_id}


def _saved_by_another(batch_id: int, remote_id: str) -> dict[str, Any]:
    """Our create answered after another submit saved a batch (ours outlived its claim) or the
    batch ended here: ours, unless it is the one saved (found by its metadata), would run the
    requests a second time, unread, so it is cancelled (best effort)."""
    saved = Batch.objects.filter(pk=batch_id).values_list("remote_id", flat=True).get()
    if saved != remote_id:
        log.warning(
            "batch %s: %s came after %r was saved; cancelling it", batch_id, remote_id, saved
        )
        batch_writer.save(batch_id, _cancel_remote(batch_id, remote_id))
    return {"batch_id": batch_id, "submitted": False, "reason": f"{saved or 'none'} was saved"}


def _cancel_remote(batch_id: int, remote_id: str) -> Counters:
    """A best-effort cancel of a batch at OpenAI that we stop following; the call, counted."""
    try:
        batch_api.cancel(remote_id)
    except Exception as exc:  # noqa: BLE001 - best effort by design: we stop following it anyway
        log.warning("batch %s: cancel of %s failed: %s", batch_id, remote_id, redact(str(exc)))
    return _called("batch_cancel")


def _submit_failed(batch: Batch, exc: BaseException, calls: Counters) -> dict[str, Any]:
    decision = classify(exc, batch.error_retries, settings.RUNS_MAX_ERROR_RETRIES)
    log.warning("batch %s: submit failed (%s): %s", batch.pk, decision.code, decision.message)
    if decision.retry:
        batch_writer.release_submit(
            batch.pk, batch.submit_claimed_at, decision.countdown, calls, errors="count"
        )
        return {"batch_id": batch.pk, "submitted": False, "retry_in": decision.countdown}
    message = f"Could not submit the batch: {decision.message}"
    _end_here(batch, BatchStatus.FAILED, calls, code=decision.code, message=message)
    return {"batch_id": batch.pk, "submitted": False, "error": decision.code}


def _end_here(
    batch: Batch,
    status: str,
    counters: Counters,
    *,
    code: str = "",
    message: str = "",
    source: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """End the batch here with ``status`` (cancelled before it was sent, refused, given up on):
    every open run ends with it, as a run its files do not mention would."""
    usual = batch_files.unmentioned(status, 0)
    code, message = code or usual.error_code, message or usual.error_message
    source = source or _SOURCE_OF_END.get(status, EventSource.POLL)
    batch_runs.end_all(batch.pk, status, code, message, source)
    fields.update(last_error_code=code, last_error=message)
    batch_writer.finish(batch.pk, status, counters, **fields)
    return {"batch_id": batch.pk, "submitted": False, "status": status}


def poll(batch_id: int, ticket: int) -> str:
    """One poll tick: at most one retrieve; at the end, the downloads and the settle."""
    batch = batch_writer.claim_poll(batch_id, ticket, settings.RUNS_CLAIM_TIMEOUT_S)
    if batch is None:
        return "skipped"
    ticket = batch.poll_generation
    # A webhook batch applies its batch.* events stored before its remote id; one applied woke it.
    webhook = batch.strategy == Strategy.WEBHOOK and not batch.polls
    if webhook and events.apply_waiting_batch(batch.pk, batch.remote_id):
        return "woken"
    now = timezone.now()
    if batch.next_poll_at is not None and (batch.next_poll_at - now).total_seconds() > HOP_SLACK_S:
        batch_writer.rearm(batch.pk, ticket, (batch.next_poll_at - now).total_seconds())
        return "hop"
    wait = budget.take("poll")
    if wait > 0:
        batch_writer.rearm(batch.pk, ticket, wait)
        return "deferred"
    counters = _called("batch_retrieve") + Counters(polls=1)
    try:
        remote = batch_api.retrieve(batch.remote_id)
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        return _failed(batch, ticket, exc, counters, None)
    if remote.status in BATCH_TERMINAL:
        return _end(batch, ticket, remote, counters)
    # Past the deadline a batch OpenAI has not ended is given up on, unless it is writing its
    # files (finalizing, or cancelling), which may take a while: that one gets one more grace.
    if past(batch.deadline_at) and (remote.status not in WINDING_DOWN or past(grace_end(batch))):
        return _give_up(batch, counters)
    if batch.status == BatchStatus.CANCELLING and remote.status in CANCELLABLE:
        counters += _cancel_remote(batch.pk, batch.remote_id)  # our cancel's message was lost
    if not batch.polls:  # a submit killed after saving the remote id left its runs pending
        batch_runs.sent(batch.pk)
    if remote.status in RUNNING and (batch.status not in RUNNING or not batch.polls):
        from_statuses = (RunStatus.PENDING, RunStatus.QUEUED)
        batch_runs.move_runs(batch.pk, from_statuses, RunStatus.IN_PROGRESS, EventSource.POLL)
    attempt = batch.poll_attempt + 1
    batch_writer.rearm(
        batch.pk,
        ticket,
        next_poll_in(batch, attempt),
        attempt=attempt,
        counters=counters,
        errors="reset",
        status=remote.status,  # never over "cancelling" (batch_writer.rearm)
        fields=remote.files_and_counts(),
    )
    return remote.status


def _end(batch: Batch, ticket: int, remote: RemoteBatch, counters: Counters) -> str:
    """The batch ended at OpenAI: download its files, settle its runs, then mark it done. The
    poll's lease covers each step (``RUNS_BATCH_FILE_TIMEOUT_S`` a file, then the settle), so the
    sweep does not start the same downloads again meanwhile."""
    files = [f for f in (remote.output_file_id, remote.error_file_id) if f]
    lease = batch_files.lease_s(len(files))
    if not batch_writer.lease(batch.pk, ticket, lease):
        batch_writer.count(batch.pk, counters)
        return "superseded"  # woken meanwhile: the fresher poll reads the files
    results: dict[int, batch_files.LineResult] = {}
    try:
        for file_id in files:
            counters += _called("file_content")
            with batch_api.download(file_id) as content:
                results.update(batch_files.parse(content))
    except Exception as exc:  # noqa: BLE001 - OpenAI ran it: never failed for our download
        return _failed(batch, ticket, exc, counters, remote)
    if files:
        batch_writer.lease(batch.pk, ticket, settings.RUNS_CLAIM_TIMEOUT_S)
    why = batch_files.batch_errors(remote.errors) if remote.status == BatchStatus.FAILED else ""
    batch_runs.settle(
        batch.pk,
        results,
        lambda pk: batch_files.unmentioned(remote.status, pk, why),
        EventSource.POLL,
    )
    batch_writer.finish(
        batch.pk,
        remote.status,
        counters,
        error_retries=0,
        last_error_code="batch_failed" if why else "",
        last_error=why,
        **remote.files_and_counts(),
    )
    log.info("batch %s: %s, %s lines read", batch.pk, remote.status, len(results))
    return remote.status


def _failed(
    batch: Batch, ticket: int, exc: BaseException, counters: Counters, ended: RemoteBatch | None
) -> str:
    """A retrieve failed, or (``ended``) a download of a batch that ended at OpenAI. A retrieve is
    retried on the error policy's countdown until the retries are spent; then the batch fails
    (given up on, past its deadline) and is cancelled at OpenAI (best effort). A download is not
    ours to fail on: OpenAI billed the batch and keeps its files 30 days, so it is retried until
    ``grace_end`` (the schedule's countdown once the retries are spent), the file ids kept; past
    it, with the retries spent, the batch ends as OpenAI says, each open run failed
    (``download_failed``, the file ids in its message)."""
    decision = classify(exc, batch.error_retries, settings.RUNS_MAX_ERROR_RETRIES, reading=True)
    what = "download" if ended else "poll"
    log.warning("batch %s: %s failed (%s): %s", batch.pk, what, decision.code, decision.message)
    kept = ended.files_and_counts() if ended else {}
    if decision.retry or (ended and not past(grace_end(batch))):
        delay = decision.countdown if decision.retry else next_poll_in(batch, batch.poll_attempt)
        batch_writer.rearm(batch.pk, ticket, delay, counters=counters, errors="count", fields=kept)
        return "retry"
    if ended is None and past(batch.deadline_at):
        return _give_up(batch, counters)
    if ended is None:  # we stop following it: stop it at OpenAI too, as a run given up on
        counters += _cancel_remote(batch.pk, batch.remote_id)
        message = f"Could not follow the batch: {decision.message}; a cancel was sent to OpenAI"
        _end_here(batch, BatchStatus.FAILED, counters, code=decision.code, message=message)
        return BatchStatus.FAILED
    message = (
        f"the batch {ended.status} at OpenAI but its files could not be downloaded "
        f"({decision.message}); output file {ended.output_file_id or '-'}, error file "
        f"{ended.error_file_id or '-'}"
    )
    _end_here(batch, ended.status, counters, code="download_failed", message=message, **kept)
    return "download_failed"


def _give_up(batch: Batch, counters: Counters) -> str:
    """Past the 24 h window and its grace, and OpenAI does not report it ended (or could not be
    asked): cancel it there (best effort), expire its open runs."""
    counters += _cancel_remote(batch.pk, batch.remote_id)
    message = "the batch did not end within its 24 h window and grace; it was cancelled"
    _end_here(batch, BatchStatus.EXPIRED, counters, code="deadline_exceeded", message=message)
    return BatchStatus.EXPIRED


def send_cancel(batch_id: int) -> str:
    """The ``runs.cancel_batch`` task: ask OpenAI to cancel, then wake the poll that sees the end.
    A batch not created yet is cancelled by its submit, which sees ``cancelling``."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or batch.status != BatchStatus.CANCELLING:
        return "skipped"
    if not batch.remote_id:
        return "not sent yet"
    counters = _called("batch_cancel")
    try:
        batch_api.cancel(batch.remote_id)
    except Exception as exc:  # noqa: BLE001 - every failure goes through the error policy
        decision = classify(exc, batch.error_retries, settings.RUNS_MAX_ERROR_RETRIES, reading=True)
        if decision.retry:
            batch_writer.save(batch_id, counters, "count")
            batch_writer.retry_cancel(batch_id, decision.countdown)
            return "retry"
        batch_writer.save(batch_id, counters)
        batch_writer.wake(batch_id)  # the server will not cancel (it ended): the poll sees how
        return "refused"
    batch_writer.save(batch_id, counters, "reset")
    batch_writer.wake(batch_id)
    return "cancel_sent"


def _called(kind: str, calls: int = 1) -> Counters:
    metrics.count_api_call(kind, calls)
    return Counters(api_calls=calls)
