"""Batches endpoints' logic: create (validate and plan every line), read, cancel, list, settle.

Why everything at creation: like a response, a batch is planned once (validation result, each
line's end and outcome, finalizing, expiry), so reads are pure; ``settle`` writes the output and
error files once the batch has ended, on the first read or webhook that sees it ended.

Timing comes from the config in force at creation: ``batch_validating_s``, ``batch_duration_s``
(metadata ``sim_duration_s`` pins it per batch) and ``batch_finalizing_s`` are *not* scaled, so a
batch of runs completes in seconds; ``expires_at`` is ``created + 24 h * time_scale``, and a
batch whose lines cannot all end before it expires there. ``batch_force`` (or metadata
``sim_outcome`` ``failed``/``expired``) forces the end: a validation failure, or an expiry
halfway through the lines.
"""

from __future__ import annotations

from typing import Any

from . import batch_lines, files, pages, validation
from .batch_lines import CANCELLED, EXPIRED
from .batches import TERMINAL_BATCH, BatchRecord, render
from .config import BATCH_FORCES
from .errors import bad_request, not_found
from .ids import hex_id
from .state import SimState
from .timeline import meta_float

#: The endpoints the SDK's ``BatchCreateParams`` names; the simulator runs ``/v1/responses``.
ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
SIMULATED_ENDPOINTS = ("/v1/responses",)
BATCH_WINDOW_S = 24 * 3600.0
OUTPUT_TTL_MIN_S, OUTPUT_TTL_MAX_S = 3600, 30 * 24 * 3600


def _output_ttl(raw: Any) -> int | None:
    """``output_expires_after``: ``{"anchor": "created_at", "seconds": 3600..2592000}``."""
    if raw is None:
        return None
    seconds = raw.get("seconds") if isinstance(raw, dict) else None
    if (
        not isinstance(raw, dict)
        or raw.get("anchor") != "created_at"
        or isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not OUTPUT_TTL_MIN_S <= seconds <= OUTPUT_TTL_MAX_S
    ):
        raise bad_request(
            "Invalid 'output_expires_after': expected {'anchor': 'created_at', 'seconds': "
            f"{OUTPUT_TTL_MIN_S}..{OUTPUT_TTL_MAX_S}}}.",
            "output_expires_after",
        )
    return seconds


def _force(state: SimState, metadata: dict[str, str]) -> str | None:
    pinned = metadata.get("sim_outcome")
    if pinned is not None and pinned not in (*BATCH_FORCES, "completed"):
        raise bad_request(
            f"Invalid metadata value for 'sim_outcome': {pinned!r}; expected one of "
            f"completed, {', '.join(BATCH_FORCES)}",
            "metadata.sim_outcome",
        )
    if pinned is not None:
        return None if pinned == "completed" else pinned
    return state.config.batch_force


def _source(state: SimState, body: dict[str, Any]) -> files.FileRecord:
    file_id = validation.required_str(body, "input_file_id")
    source = state.stores.files.get(file_id)
    if source is None:
        raise bad_request(f"No such File object: {file_id}", "input_file_id")
    if source.purpose != "batch":
        raise bad_request(
            f"The input file {file_id} must be uploaded with purpose 'batch'.", "input_file_id"
        )
    return source


def create(state: SimState, body: dict[str, Any]) -> BatchRecord:
    """``POST /v1/batches``: check the request, then validate and plan the input file."""
    endpoint = validation.required_str(body, "endpoint")
    if endpoint not in ENDPOINTS:
        raise bad_request(f"Invalid value for 'endpoint': {endpoint!r}.", "endpoint")
    if endpoint not in SIMULATED_ENDPOINTS:
        raise bad_request(
            f"The simulator runs only '/v1/responses' batches; 'endpoint' {endpoint!r} is not "
            "simulated.",
            "endpoint",
        )
    window = validation.required_str(body, "completion_window")
    if window != "24h":
        raise bad_request(
            f"Invalid value for 'completion_window': {window!r}. Supported values are: '24h'.",
            "completion_window",
        )
    metadata = validation.metadata(body.get("metadata"))
    ttl = _output_ttl(body.get("output_expires_after"))
    source = _source(state, body)
    force = _force(state, metadata)
    config = state.config
    duration = meta_float(metadata, "sim_duration_s")
    duration = config.batch_duration_s if duration is None else duration
    now = state.now()
    in_progress_at = now + config.batch_validating_s
    lines, errors = batch_lines.plan(
        state,
        source.content,
        endpoint,
        started=in_progress_at,
        duration_s=duration,
        failure_rate=config.batch_line_failure_rate,
    )
    if force == "failed" and not errors:
        errors = [
            {
                "code": "batch_failed",
                "message": "The batch failed validation (simulated: batch_force=failed).",
                "param": None,
                "line": None,
            }
        ]
    finalizing_at = in_progress_at + duration
    expires_at = now + BATCH_WINDOW_S * config.time_scale
    if force == "expired":
        expires_at = min(expires_at, in_progress_at + duration / 2)
    batch = BatchRecord(
        id=hex_id(state.rng, "batch", 16),
        input_file_id=source.id,
        endpoint=endpoint,
        completion_window=window,
        metadata=metadata,
        created_at=now,
        in_progress_at=in_progress_at,
        finalizing_at=finalizing_at,
        completed_at=finalizing_at + config.batch_finalizing_s,
        expires_at=expires_at,
        expires=force == "expired" or expires_at < finalizing_at,
        lines=[] if errors else lines,
        errors=errors,
        model=lines[0].record.model if lines and not errors else None,
        output_ttl_s=ttl,
    )
    state.stores.batches[batch.id] = batch
    state.stats.register(batch.id, "batch", now, metadata)
    state.stats.count_batch_lines(batch.lines)
    if state.webhooks is not None:
        state.webhooks.schedule_batch(batch)
    return batch


def get(state: SimState, batch_id: str) -> BatchRecord:
    """Look a batch up, or 404."""
    batch = state.stores.batches.get(batch_id)
    if batch is None:
        raise not_found(f"No batch found with id '{batch_id}'.")
    return batch


def settle(state: SimState, batch: BatchRecord, now: float) -> None:
    """Once ended, write the output file (lines that succeeded) and the error file (lines that
    failed, then lines that never ran: ``batch_expired``/``batch_cancelled``). Idempotent."""
    status = batch.status(now)
    if batch.settled or status not in TERMINAL_BATCH:
        return
    batch.settled = True
    if status == "failed":
        return
    rng = state.rng
    done = {line.number for line in batch.done(now)}
    reason = CANCELLED if status == "cancelled" else EXPIRED
    output: list[dict[str, Any]] = []
    error: list[dict[str, Any]] = []
    for line in batch.lines:
        if line.number not in done:
            error.append(batch_lines.unfinished_row(rng, line, reason))
        elif line.ok:
            output.append(batch_lines.output_row(rng, line))
        else:
            error.append(batch_lines.failed_row(rng, line))
    ended, ttl = batch.terminal_at(), batch.output_ttl_s
    if output:
        name, content = f"{batch.id}_output.jsonl", batch_lines.jsonl(output)
        batch.output_file_id = files.store_output(state, name, content, ended, ttl).id
    if error:
        name, content = f"{batch.id}_error.jsonl", batch_lines.jsonl(error)
        batch.error_file_id = files.store_output(state, name, content, ended, ttl).id


def retrieve(state: SimState, batch_id: str) -> BatchRecord:
    """``GET /v1/batches/{id}`` (settles an ended batch first, so its file ids show)."""
    batch = get(state, batch_id)
    state.stats.touch(batch_id, "retrieve")
    settle(state, batch, state.now())
    return batch


def cancel(state: SimState, batch_id: str) -> BatchRecord:
    """``POST /v1/batches/{id}/cancel``: ``cancelling`` now, ``cancelled`` after the lag."""
    batch = get(state, batch_id)
    state.stats.touch(batch_id, "cancel")
    now = state.now()
    settle(state, batch, now)
    status = batch.status(now)
    if status in TERMINAL_BATCH:
        raise bad_request(f"Cannot cancel a batch with status '{status}'.")
    if status == "cancelling":
        return batch
    batch.cancelling_at = now
    batch.cancelled_at = now + state.config.batch_cancel_lag_s
    batch.webhook_token += 1
    if state.webhooks is not None:
        state.webhooks.schedule_batch(batch)
    return batch


def list_page(state: SimState, params: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/batches?after=&limit=``: newest first."""
    now = state.now()

    def settled(batch: BatchRecord) -> dict[str, Any]:
        settle(state, batch, now)
        return render(batch, now)

    return pages.page(
        list(reversed(state.stores.batches.values())),
        params,
        settled,
        lambda batch: batch.id,
        default=20,
        maximum=100,
    )
