"""Executing one tool call, bounded in time, and turning every failure into an output.

The model asked for ``name(arguments)``; whatever happens here — the tool raises, runs too long,
does not exist, or the arguments are not a JSON object of the declared types — the answer is an
``Outcome`` whose output goes back to the model, so a run can never hang on a tool. Arguments are
validated before the call (``tool_args``): a call that does not fit never reaches the function.
Outputs are capped and errors made safe to show in ``tool_output``. No database access here:
``engine.tool_calls`` records outcomes on the ``ToolCall`` rows.

Why a thread pool: Python cannot interrupt a running function, so the worker runs the tool in a
pool thread and waits at most the tool's timeout. A timed-out tool keeps its pool thread until it
returns; the pool is bounded (``RUNS_TOOL_THREADS``), and a call that cannot even start in time
times out the same way, so a wedged tool degrades to error outputs, never to a stuck run.
"""

from __future__ import annotations

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

from . import tool_args
from .conf import settings
from .tool_output import Outcome, error_outcome, failure, success
from .tools import _CALL_ID, Tool, get_tool

__all__ = ["Outcome", "Request", "execute", "execute_many", "parse_arguments", "timeout_for"]

log = logging.getLogger(__name__)

#: Longest excerpt of bad arguments quoted back in an error.
QUOTE_CHARS = 200


def _quote(arguments: str) -> str:
    short = arguments if len(arguments) <= QUOTE_CHARS else arguments[:QUOTE_CHARS] + "…"
    return repr(short)


def parse_arguments(tool: Tool, arguments: str) -> dict[str, Any] | Outcome:
    """The keyword arguments for ``tool``, validated against its hints, or the error outcome
    explaining why there are none (the function is then not called)."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past Python's limit
        return error_outcome(
            f"arguments for {tool.name} are not valid JSON ({exc}): {_quote(arguments)}"
        )
    if not isinstance(parsed, dict):
        return error_outcome(
            f"arguments for {tool.name} must be a JSON object, got {_quote(arguments)}"
        )
    if tool.func is None:
        return parsed
    valid = tool_args.validate(tool.arguments_adapter, arguments if parsed else "{}")
    if isinstance(valid, str):
        return error_outcome(f"invalid arguments for {tool.name}: {valid}")
    return dict(valid)


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
    if tool.call_id_param is not None:
        kwargs = {**kwargs, tool.call_id_param: call_id}
    token = _CALL_ID.set(call_id)
    try:
        return tool.func(**kwargs)
    finally:
        _CALL_ID.reset(token)
        # A tool may use the ORM; pool threads live long, so do not leave connections open.
        connections.close_all()


def timeout_for(tool: Tool) -> float:
    return tool.timeout_s if tool.timeout_s is not None else settings.RUNS_TOOL_TIMEOUT_S


def _wait(tool: Tool, future: Future[Any], deadline: float, call_id: str) -> Outcome:
    """The call's outcome: its result, or the error output for whatever it raised.

    Whatever *the tool* raised, ``BaseException`` included: a tool calling ``sys.exit()`` (a
    library's CLI entry point) or raising ``KeyboardInterrupt`` ends only its call, never the
    tool task (the round would be left unanswered until the claim timed out). What is raised in
    *this* thread while it waits (Celery's time limit, a signal to the worker) is not the tool's
    doing and propagates.
    """
    timeout = timeout_for(tool)
    try:
        result = future.result(timeout=max(deadline - time.monotonic(), 0))
    except FutureTimeout:
        if future.cancel():  # never started: every pool thread is busy with slow tools
            return error_outcome(f"{tool.name} could not start within {timeout:g} s (busy)")
        log.warning("tool %s did not finish within %s s", tool.name, timeout)
        return error_outcome(f"{tool.name} did not finish within {timeout:g} s")
    except BaseException as exc:  # noqa: BLE001 - any tool failure is an output, by design
        if not _raised_by_the_tool(future, exc):
            raise
        return failure(tool.name, exc, call_id)
    return success(tool.name, result)


def _raised_by_the_tool(future: Future[Any], exc: BaseException) -> bool:
    return future.done() and not future.cancelled() and future.exception() is exc


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
    pending: list[tuple[int, Tool, Future[Any], float, str]] = []
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
        pending.append((index, tool, future, deadline, request.call_id))
    for index, tool, future, deadline, call_id in pending:
        outcomes[index] = _wait(tool, future, deadline, call_id)
    return [o for o in outcomes if o is not None]


def execute(name: str, arguments: str, allowed: Sequence[str]) -> Outcome:
    """Execute one call (see ``execute_many``)."""
    return execute_many([Request(name, arguments)], allowed)[0]
