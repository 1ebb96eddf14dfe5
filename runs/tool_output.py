"""What goes back to the model for one tool call, and what operators keep of it.

Two audiences, two texts. The model gets the output, or for a failure an error it can act on;
the ``ToolCall`` row and the log keep the full detail. Three rules make that safe:

- **capped**: an output longer than ``RUNS_TOOL_OUTPUT_MAX_BYTES`` (UTF-8) is cut at a character
  boundary and ends with ``…[truncated: N bytes, limit L]``, so one tool cannot send (or store)
  megabytes; the stored output carries the same marker, and a warning is logged;
- **generic to the model**: when a tool raises, the model reads ``tool X failed: ValueError``,
  never the message (it may hold a URL with a key, a path, a customer's data);
- **redacted for operators**: the message and traceback kept in ``ToolCall.error`` and the log
  went through ``redact.redact`` first, and are capped like an output;
- **storable**: a NUL or a lone surrogate (bytes read from a file, a C library's string) becomes
  U+FFFD in both texts (``storable.replaced``), which PostgreSQL then stores; refused, the call
  would fail at its write and run again until the run's deadline.
"""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass
from typing import Any

from .conf import settings
from .redact import redact
from .storable import replaced

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What to send back for one call. ``error`` is empty when the tool succeeded; otherwise it
    is the operators' detail, while ``output`` is what the model reads."""

    output: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def truncation_marker(size: int, limit: int) -> str:
    return f"…[truncated: {size} bytes, limit {limit}]"


def cap(text: str, limit: int | None = None) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else its longest prefix that does, marker
    included, cut between characters (never inside one)."""
    limit = settings.RUNS_TOOL_OUTPUT_MAX_BYTES if limit is None else limit
    if len(text) <= limit // 4:  # cannot exceed the limit: at most 4 bytes per character
        return text
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= limit:
        return text
    marker = truncation_marker(len(encoded), limit)
    room = max(limit - len(marker.encode("utf-8")), 0)
    # A prefix of valid UTF-8 is valid but for at most one cut character: "ignore" drops it.
    return encoded[:room].decode("utf-8", errors="ignore") + marker


def serialise(result: Any) -> str:
    """A tool's return value as the string the API wants: strings as they are, else JSON (or,
    what JSON cannot hold, its ``str``)."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return str(result)


def success(name: str, result: Any) -> Outcome:
    """A tool's return value as its output, capped; an error output when it has no text (an
    integer past Python's digit limit, a list nested past the recursion limit)."""
    try:
        output = replaced(serialise(result))
    except Exception as exc:  # noqa: BLE001 - a value we cannot send is the tool's failure
        return error_outcome(
            f"tool {name} returned a value that cannot be sent as text: {type(exc).__name__}",
            f"tool {name} returned a {type(result).__name__} that cannot be sent: {exc!r}",
        )
    capped = cap(output)
    if capped is not output:
        log.warning(
            "tool %s returned %d bytes; sent %d (RUNS_TOOL_OUTPUT_MAX_BYTES)",
            name,
            len(output.encode("utf-8")),
            len(capped.encode("utf-8")),
        )
    return Outcome(output=capped)


#: Redaction reads at most this many times the output limit of a detail (it costs about 0.2 s
#: per MB): more than it can keep once capped, even where masking shortened the text.
REDACT_WINDOW = 16


def for_operators(detail: str) -> str:
    """``detail`` redacted, then capped like an output."""
    limit = settings.RUNS_TOOL_OUTPUT_MAX_BYTES
    return cap(replaced(redact(detail[: REDACT_WINDOW * limit])), limit)


def error_outcome(message: str, detail: str | None = None) -> Outcome:
    """An error output the model can read (JSON, like most tool outputs) and its record.

    ``message`` is what the model reads; ``detail`` (default: the message) what operators keep.
    """
    kept = for_operators(message if detail is None else detail)
    output = json.dumps({"error": replaced(message)}, ensure_ascii=False)
    return Outcome(output=cap(output), error=kept)


def told_the_model(output: str) -> str:
    """The error text the model read in an error ``output`` (``{"error": "..."}``).

    Why not ``ToolCall.error``: that is the operators' detail (message, traceback), which may
    name paths, hosts or a customer's data even after redaction; a client of the JSON API gets
    what the model got. An output that is not such an object (capped, or written by older code)
    is returned as it is: it is what the model read; ``""`` when nothing was sent.
    """
    try:
        parsed = json.loads(output) if output else None
    except ValueError:
        return output
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"]
    return output


def _traceback(exc: BaseException) -> str:
    """The traceback from the tool's own frames down: the worker's thread-pool frames above them
    (``concurrent.futures``, ``tool_runner``) say nothing about the failure."""
    summary = traceback.TracebackException.from_exception(exc)
    frames = list(summary.stack)
    while frames and _is_machinery(frames[0].filename):
        frames.pop(0)
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format()).rstrip()


def _text(exc: BaseException) -> str:
    """The exception's message; one whose ``__str__`` itself raises is still an output, not an
    error of the tool task (which would leave the round to run again once its claims expired)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - user code's __str__
        return "(its message could not be formatted)"


def _is_machinery(filename: str) -> bool:
    path = filename.replace("\\", "/")
    return "/concurrent/futures/" in path or path.endswith("/runs/tool_runner.py")


def failure(name: str, exc: BaseException, call_id: str = "") -> Outcome:
    """A tool raised: a generic error for the model, the redacted traceback for operators."""
    kind = type(exc).__name__
    summary = f"{name} raised {kind}: {_text(exc)}"
    trace = _traceback(exc)  # the traceback module formats a failing message safely itself
    outcome = error_outcome(f"tool {name} failed: {kind}", f"{summary}\n\n{trace}")
    log.warning("tool %s (call %s) failed: %s", name, call_id or "-", outcome.error)
    return outcome
