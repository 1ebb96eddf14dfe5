"""The Batch API's files, as pure functions: runs -> the input JSONL; the output and error files
-> one result per run; a batch's end -> what happens to a run no file mentions; and the clock it
is polled on (``schedule``, ``next_poll_in``).

No database, no client: ``batch_lifecycle`` reads the rows and makes the calls, this module only
translates, so every shape is testable from bytes alone.

Input, one line per run (``custom_id`` is our run id, so a line finds its run with no lookup)::

    {"custom_id": "42", "method": "POST", "url": "/v1/responses",
     "body": {"model": ..., "input": [...], "instructions": ..., "metadata": {...}, ...}}

Output and error files, one line per request, as OpenAI writes them::

    {"id": "batch_req_...", "custom_id": "42",
     "response": {"status_code": 200, "request_id": "...", "body": <a Response>}, "error": null}
    {"id": ..., "custom_id": "43", "response": {"status_code": 500, "body": {"error": {...}}}, ...}
    {"id": ..., "custom_id": "44", "response": null, "error": {"code": "batch_expired", ...}}
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from ..backends.common import remote_metadata, request_options
from ..conf import settings
from ..schedule import Schedule
from ..status import BATCH_WINDOW_S, BatchStatus, RunStatus, Strategy

if TYPE_CHECKING:
    from ..models import Batch, Run

log = logging.getLogger(__name__)

#: The one endpoint our lines call.
ENDPOINT = "/v1/responses"

#: A line's response status -> the run's terminal status.
RESPONSE_STATUS = {
    "completed": RunStatus.COMPLETED,
    "incomplete": RunStatus.INCOMPLETE,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
}
#: Error codes OpenAI gives the lines a batch never ran, and what they mean for the run.
UNRUN_CODES = {"batch_expired": RunStatus.EXPIRED, "batch_cancelled": RunStatus.CANCELLED}


@dataclass(frozen=True)
class LineResult:
    """What one line of the output or error file says about one run: a terminal status and the
    fields saved with it."""

    run_id: int
    status: str
    remote_id: str = ""
    output_text: str = ""
    usage: dict[str, Any] | None = None
    error_code: str = ""
    error_message: str = ""
    remote_completed_at: datetime | None = None


#: The Batch API's limit on one input file (OpenAI: "up to 200 MB").
INPUT_MAX_BYTES = 200 * 1000 * 1000


def request_line(run: Run, message: str, role: str = "user") -> dict[str, Any]:
    """The input line for a single-turn run carrying its one ``message``.

    ``request_options(run, background=False)``: the run's options (structured output, reasoning,
    token cap, cache key...) exactly as a single run sends them, minus a background window: the
    batch's own 24 h window applies.
    """
    body: dict[str, Any] = {
        "model": run.model,
        "input": [{"type": "message", "role": role, "content": message}],
        "metadata": remote_metadata(run),
        **request_options(run, background=False),
    }
    if run.instructions:
        body["instructions"] = run.instructions
    return {"custom_id": str(run.pk), "method": "POST", "url": ENDPOINT, "body": body}


def input_size(model: Run, prompts: list[str]) -> int:
    """The bytes of the input file ``prompts`` make, each a line like ``model`` (an unsaved run
    with the batch's options), ids at their widest: what a batch is checked against before any
    row is written (``INPUT_MAX_BYTES``)."""
    widest = copy.copy(model)
    widest.pk = 10**18
    line = len(input_file([request_line(widest, "")]))  # the prompt's quotes included
    return len(prompts) * line + sum(len(json.dumps(p)) - 2 for p in prompts)


def input_file(lines: Iterable[dict[str, Any]]) -> bytes:
    """The JSONL the upload carries: one compact JSON object a line."""
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def parse(data: bytes | str | Iterable[bytes]) -> dict[int, LineResult]:
    """Every line of an output or error file, by run id: the whole content, or its lines (a
    binary file read line by line, as ``batch_api.download`` hands it over). A line we cannot
    read (not JSON, a ``custom_id`` that is not one of our ids) is logged and skipped: its run is
    then settled by the batch's end like a run no file mentions (``unmentioned``)."""
    if isinstance(data, bytes | str):
        data = (data.encode() if isinstance(data, str) else data).splitlines()
    results: dict[int, LineResult] = {}
    for number, line_bytes in enumerate(data, start=1):
        raw = line_bytes.decode("utf-8", errors="replace")
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            run_id = int(line["custom_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("batch file line %s is not a result we can read; skipped", number)
            continue
        results[run_id] = parse_line(run_id, line)
    return results


def parse_line(run_id: int, line: dict[str, Any]) -> LineResult:
    """One result line: a Response that ran (completed, incomplete, failed), an HTTP error, or a
    request the batch never ran (``batch_expired``, ``batch_cancelled``)."""
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    error = line.get("error") if isinstance(line.get("error"), dict) else None
    if response is not None and response.get("status_code") == 200:
        return _from_response(run_id, response.get("body") or {})
    if error is None and response is not None:
        body = response.get("body") if isinstance(response.get("body"), dict) else {}
        inner = body.get("error") if isinstance(body.get("error"), dict) else {}
        error = {**inner, "code": inner.get("code") or f"http_{response.get('status_code')}"}
    error = error or {}
    code = str(error.get("code") or "batch_line_failed")
    message = str(error.get("message") or "the batch reported this request as failed")
    return LineResult(run_id, UNRUN_CODES.get(code, RunStatus.FAILED), "", "", None, code, message)


#: Statuses whose answer keeps the text the response wrote.
WROTE = frozenset({RunStatus.COMPLETED, RunStatus.INCOMPLETE})


def _from_response(run_id: int, body: dict[str, Any]) -> LineResult:
    status = RESPONSE_STATUS.get(str(body.get("status")), RunStatus.FAILED)
    code = message = ""
    if isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or "error")
        message = str(body["error"].get("message") or "")
    elif status == RunStatus.INCOMPLETE:
        details = body.get("incomplete_details") or {}
        code, message = "incomplete", f"Response incomplete: {details.get('reason') or 'no reason'}"
    elif status == RunStatus.FAILED:
        code, message = "unexpected_status", f"the response's status is {body.get('status')!r}"
    completed = body.get("completed_at")
    return LineResult(
        run_id,
        status,
        remote_id=str(body.get("id") or ""),
        # An incomplete answer (cut off at max_output_tokens, say) keeps what it wrote, as a
        # background response's does: it was paid for.
        output_text=output_text(body) if status in WROTE else "",
        usage=body.get("usage") if isinstance(body.get("usage"), dict) else None,
        error_code=code,
        error_message=message,
        remote_completed_at=_moment(completed),
    )


def _moment(value: Any) -> datetime | None:
    """A Unix time from a line; None for anything else (a huge number, NaN, a string)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def output_text(body: dict[str, Any]) -> str:
    """The text of a Response as a dict: every ``output_text`` part of its messages, joined (the
    SDK's ``Response.output_text`` does the same for a parsed one)."""
    parts = []
    for item in body.get("output") or []:
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    parts.append(str(part.get("text") or ""))
    return "".join(parts)


#: A batch's end -> (the status, code and message of a run neither file mentions).
UNMENTIONED: dict[str, tuple[str, str, str]] = {
    BatchStatus.COMPLETED: (
        RunStatus.FAILED,
        "missing_result",
        "the batch completed without a result line for this run",
    ),
    BatchStatus.FAILED: (RunStatus.FAILED, "batch_failed", "the batch failed"),
    BatchStatus.EXPIRED: (
        RunStatus.EXPIRED,
        "batch_expired",
        "the batch's 24 h window ended before this run was processed",
    ),
    BatchStatus.CANCELLED: (
        RunStatus.CANCELLED,
        "batch_cancelled",
        "the batch was cancelled before this run was processed",
    ),
}


def unmentioned(batch_status: str, run_id: int, detail: str = "") -> LineResult:
    """The result of a run neither file mentions, once the batch ended ``batch_status``."""
    status, code, message = UNMENTIONED.get(batch_status, UNMENTIONED[BatchStatus.FAILED])
    return LineResult(run_id, status, error_code=code, error_message=detail or message)


def batch_errors(errors: list[dict[str, Any]], most: int = 3) -> str:
    """A failed batch's ``errors.data`` as one line for each run's ``last_error``."""
    said = [
        f"{e.get('code') or 'error'}"
        + (f" (line {e['line']})" if e.get("line") else "")
        + f": {e.get('message') or ''}"
        for e in errors[:most]
    ]
    more = f" (+{len(errors) - most} more)" if len(errors) > most else ""
    return "the batch failed: " + ("; ".join(said) or "no reason given") + more


def schedule(batch: Batch) -> Schedule:
    """By polling 30 s x 1.5 up to 10 min; under webhooks a safety net from an hour (a lost event
    delays the batch, never strands it); both on the 24 h window's clock (``RUNS_TIME_SCALE``)."""
    scale = float(settings.RUNS_TIME_SCALE)
    if batch.strategy == Strategy.WEBHOOK:
        base, cap = settings.RUNS_BATCH_SAFETY_NET_BASE_S, settings.RUNS_BATCH_SAFETY_NET_CAP_S
    else:
        base, cap = settings.RUNS_BATCH_POLL_BASE_S, settings.RUNS_BATCH_POLL_CAP_S
    return Schedule(
        base=base * scale,
        factor=settings.RUNS_BATCH_POLL_FACTOR,
        cap=max(cap, base) * scale,
        jitter=settings.RUNS_POLL_JITTER,
    )


def next_poll_in(batch: Batch, attempt: int) -> float:
    """The wait before poll ``attempt + 1``: the schedule's, never past the deadline (once past
    it, never past ``grace_end``)."""
    delay = schedule(batch).delay(attempt)
    if batch.deadline_at is not None:
        now = timezone.now()
        end = batch.deadline_at if now < batch.deadline_at else grace_end(batch)
        assert end is not None
        delay = min(delay, max((end - now).total_seconds(), 0.0) + 0.05)
    return delay


def lease_s(files: int) -> float:
    """How long a poll holds a batch that ended at OpenAI: ``RUNS_BATCH_FILE_TIMEOUT_S`` a file
    to download, then ``RUNS_CLAIM_TIMEOUT_S`` for the settle. With both files, also the batch
    tasks' own time limit (``runs/tasks.py``)."""
    return files * settings.RUNS_BATCH_FILE_TIMEOUT_S + settings.RUNS_CLAIM_TIMEOUT_S


def deadline_from(moment: datetime) -> datetime:
    """When we give up on a batch created at OpenAI (or, until then, here) at ``moment``: its
    24 h window plus ``RUNS_BATCH_GRACE_S``, scaled."""
    scale = settings.RUNS_TIME_SCALE
    return moment + timedelta(seconds=(BATCH_WINDOW_S + settings.RUNS_BATCH_GRACE_S) * scale)


def past(moment: datetime | None) -> bool:
    return moment is not None and timezone.now() >= moment


def grace_end(batch: Batch) -> datetime | None:
    """The deadline plus one more ``RUNS_BATCH_GRACE_S``: how long past its deadline a batch
    OpenAI is still writing the files of (finalizing or cancelling) is waited for."""
    if batch.deadline_at is None:
        return None
    scale = settings.RUNS_TIME_SCALE
    return batch.deadline_at + timedelta(seconds=settings.RUNS_BATCH_GRACE_S * scale)
