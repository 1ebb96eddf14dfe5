"""Executing one tool call, bounded in time, and turning every failure into an output.

The model asked for ``name(arguments)``; whatever happens here — the tool raises, runs too long,
does not exist, or the arguments are not a JSON object — the answer is an ``Outcome`` whose output
goes back to the model, so a run can never hang on a tool. No database access here:
``engine.tool_calls`` records outcomes on the ``ToolCall`` rows.

Why a thread pool: Python cannot interrupt a running function, so the worker runs the tool in a
pool thread and waits at most the tool's timeout. A timed-out tool keeps its pool thread until it
returns; the pool is bounded (``RUNS_TOOL_THREADS``), and a call that cannot even start in time
times out the same way, so a wedged tool degrades to error outputs, never to a stuck run.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from django.db import connections

from .conf import settings
from .tools import _CALL_ID, Tool, get_tool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What to send back for one call. ``error`` is empty when the tool succeeded."""

    output: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def error_outcome(message: str) -> Outcome:
    """An error the model can read (JSON, like most tool outputs) and we can record."""
    return Outcome(output=json.dumps({"error": message}, ensure_ascii=False), error=message)


def serialise(result: Any) -> str:
    """A tool's return value as the string the API wants: strings as they are, else JSON."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(result)


def parse_arguments(tool: Tool, arguments: str) -> dict[str, Any] | Outcome:
    """The keyword arguments for ``tool``, or the error outcome explaining why there are none."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError as exc:
        return error_outcome(f"arguments for {tool.name} are not valid JSON ({exc}): {arguments!r}")
    if not isinstance(parsed, dict):
        return error_outcome(f"arguments for {tool.name} must be a JSON object, got {arguments!r}")
    if tool.func is not None:
        try:
            inspect.signature(tool.func).bind(**parsed)
        except TypeError as exc:
            return error_outcome(f"bad arguments for {tool.name}: {exc}")
    return parsed


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=settings.RUNS_TOOL_THREADS, thread_name_prefix="runs-tool"
            )
        return _pool


def _call(tool: Tool, kwargs: dict[str, Any], call_id: str) -> Any:
    assert tool.func is not None
    token = _CALL_ID.set(call_id)
    try:
        return tool.func(**kwargs)
    finally:
        _CALL_ID.reset(token)
        # A tool may use the ORM; pool threads live long, so do not leave connections open.
        connections.close_all()


def timeout_for(tool: Tool) -> float:
    return tool.timeout_s if tool.timeout_s is not None else settings.RUNS_TOOL_TIMEOUT_S


def _wait(tool: Tool, future: Future[Any], deadline: float) -> Outcome:
    timeout = timeout_for(tool)
    try:
        return Outcome(output=serialise(future.result(timeout=max(deadline - time.monotonic(), 0))))
    except FutureTimeout:
        if future.cancel():  # never started: every pool thread is busy with slow tools
            return error_outcome(f"{tool.name} could not start within {timeout:g} s (busy)")
        log.warning("tool %s did not finish within %s s", tool.name, timeout)
        return error_outcome(f"{tool.name} did not finish within {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - any tool failure is an output, by design
        log.info("tool %s raised %s: %s", tool.name, type(exc).__name__, exc)
        return error_outcome(f"{tool.name} raised {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Request:
    """One call to execute; ``call_id`` is what ``tools.current_call_id()`` tells the tool."""

    name: str
    arguments: str
    call_id: str = ""


def execute_many(requests: Sequence[Request], allowed: Sequence[str]) -> list[Outcome]:
    """Execute calls concurrently (parallel tool calls), each bounded by its own timeout.

    ``allowed`` are the run's tool names: a registered tool the run was not given is refused like
    an unknown one, so a model cannot reach tools the application did not offer it. Manual tools
    are not executed here (the caller never passes them).
    """
    pending: list[tuple[int, Tool, Future[Any], float]] = []
    outcomes: list[Outcome | None] = [None] * len(requests)
    for index, request in enumerate(requests):
        tool = get_tool(request.name) if request.name in allowed else None
        if tool is None or tool.func is None:
            offered = ", ".join(allowed) or "none"
            outcomes[index] = error_outcome(
                f"unknown tool {request.name!r}; this run offers: {offered}"
            )
            continue
        kwargs = parse_arguments(tool, request.arguments)
        if isinstance(kwargs, Outcome):
            outcomes[index] = kwargs
            continue
        deadline = time.monotonic() + timeout_for(tool)
        future = _executor().submit(_call, tool, kwargs, request.call_id)
        pending.append((index, tool, future, deadline))
    for index, tool, future, deadline in pending:
        outcomes[index] = _wait(tool, future, deadline)
    return [o for o in outcomes if o is not None]


def execute(name: str, arguments: str, allowed: Sequence[str]) -> Outcome:
    """Execute one call (see ``execute_many``)."""
    return execute_many([Request(name, arguments)], allowed)[0]
