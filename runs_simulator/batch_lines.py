"""A batch's lines: reading and checking the input file, and the rows of its output files.

Why checked up front: the API validates the whole input file before running anything, and a
file with one bad line (not JSON, a missing or duplicate ``custom_id``, the wrong ``url``, a
body that is not a valid create) fails the whole batch with ``errors.data`` naming the lines.
Each valid line is planned at once (when it ends, whether it fails, the ``Response`` it
answers), exactly as the same body would be planned by ``POST /v1/responses``.

Which lines fail is predictable: metadata ``sim_outcome: "failed"`` in a line's body always
fails it, and ``batch_line_failure_rate`` picks lines by a hash of their ``custom_id`` (not by
the RNG), so a test can tell in advance which custom ids fail (``line_fails``).
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from . import response_service
from .errors import SERVER_ERROR_MESSAGE, ApiError
from .ids import hex_id
from .responses import ResponseRecord, render
from .state import SimState

EXPIRED = (
    "batch_expired",
    "This request could not be executed before the completion window expired.",
)
CANCELLED = (
    "batch_cancelled",
    "This request was not executed because the batch was cancelled.",
)


@dataclass
class Line:
    """One request of a batch, planned: when it ends and what it answers."""

    number: int
    custom_id: str
    done_at: float
    ok: bool
    record: ResponseRecord
    error_code: str = "server_error"


def line_fails(custom_id: str, rate: float) -> bool:
    """Whether ``batch_line_failure_rate`` = ``rate`` fails this custom id (a stable hash)."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(custom_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def _error(number: int | None, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """A ``BatchError``."""
    return {"code": code, "message": message, "param": param, "line": number}


def _check(
    number: int, text: str, endpoint: str, seen: set[str]
) -> tuple[str, dict[str, Any]] | dict[str, Any]:
    """``(custom_id, body)`` of a well-formed line, or the ``BatchError`` it deserves."""
    try:
        row = json.loads(text)
    except ValueError:
        row = None
    if not isinstance(row, dict):
        return _error(number, "invalid_json_line", "This line is not parseable as valid JSON.")
    custom_id = row.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _error(
            number,
            "missing_required_parameter",
            "Missing required parameter: 'custom_id'.",
            "custom_id",
        )
    if custom_id in seen:
        return _error(
            number,
            "duplicate_custom_id",
            "The custom_id for this request is a duplicate of another request. The custom_id "
            "parameter must be unique for each request in a batch.",
            "custom_id",
        )
    seen.add(custom_id)
    if row.get("method") != "POST":
        return _error(number, "invalid_method", "The method must be 'POST'.", "method")
    if row.get("url") != endpoint:
        return _error(
            number,
            "invalid_url",
            "The URL provided for this request does not match the batch endpoint.",
            "url",
        )
    body = row.get("body")
    if not isinstance(body, dict):
        return _error(number, "invalid_request", "The 'body' must be a JSON object.", "body")
    return custom_id, body


def plan(
    state: SimState,
    content: bytes,
    endpoint: str,
    *,
    started: float,
    duration_s: float,
    failure_rate: float,
) -> tuple[list[Line], list[dict[str, Any]]]:
    """Check every line and plan the valid ones; ``(lines, errors)``, errors by line number."""
    text = content.decode("utf-8", "replace")
    numbered = [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if not numbered:
        return [], [_error(None, "empty_file", "The batch input file is empty.")]
    lines: list[Line] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    for number, raw in numbered:
        checked = _check(number, raw, endpoint, seen)
        if isinstance(checked, dict):
            errors.append(checked)
            continue
        custom_id, body = checked
        done_at = started + state.rng.uniform(0.02, 1.0) * duration_s
        try:
            record = response_service.standalone(state, body, started, done_at)
        except ApiError as exc:
            param = f"body.{exc.param}" if exc.param else None
            errors.append(_error(number, exc.code or "invalid_request", exc.message, param))
            continue
        model = model or record.model
        if record.model != model:
            errors.append(
                _error(
                    number,
                    "mismatched_model",
                    "The provided model does not match the model of other requests in this "
                    "batch: a batch holds requests for one model.",
                    "body.model",
                )
            )
            continue
        metadata = record.metadata
        fails = metadata.get("sim_outcome") == "failed" or line_fails(custom_id, failure_rate)
        code = metadata.get("sim_error_code") or "server_error"
        lines.append(Line(number, custom_id, done_at, not fails, record, code))
    return lines, errors


def _row(rng: random.Random, line: Line, response: Any, error: Any) -> dict[str, Any]:
    return {
        "id": hex_id(rng, "batch_req", 16),
        "custom_id": line.custom_id,
        "response": response,
        "error": error,
    }


def output_row(rng: random.Random, line: Line) -> dict[str, Any]:
    """The output file's row of a line that succeeded: the full ``Response``."""
    body = render(line.record, line.record.timeline.terminal_at)
    response = {
        "status_code": 200,
        "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "body": body,
    }
    return _row(rng, line, response, None)


def failed_row(rng: random.Random, line: Line) -> dict[str, Any]:
    """The error file's row of a line that ran and failed (a 500 with the API's error body)."""
    error = {
        "message": SERVER_ERROR_MESSAGE,
        "type": "server_error",
        "param": None,
        "code": line.error_code,
    }
    response = {
        "status_code": 500,
        "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "body": {"error": error},
    }
    return _row(rng, line, response, None)


def unfinished_row(rng: random.Random, line: Line, reason: tuple[str, str]) -> dict[str, Any]:
    """The error file's row of a line that never ran (the batch expired or was cancelled)."""
    code, message = reason
    return _row(rng, line, None, {"code": code, "message": message})


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    """Rows as a JSONL file (one compact JSON object a line)."""
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode()
