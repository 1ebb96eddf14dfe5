"""Assistants endpoints' logic: threads, messages, runs, cancel and tool outputs.

Why a service layer: every read of a run must first ``advance`` it and, on completion,
add the assistant's reply to the thread exactly once; keeping that in one ``refresh``
function guarantees messages and runs never disagree.
"""

from __future__ import annotations

from typing import Any

from . import validation
from .assistants import (
    RUN_OUTCOMES,
    TERMINAL_RUN,
    RunRecord,
    ThreadRecord,
    message_payload,
)
from .conversations import list_page
from .errors import bad_request, not_found
from .ids import alnum_id
from .state import SimState
from .timeline import meta_float, plan
from .tool_scenario import tool_plan


def get_thread(state: SimState, thread_id: str) -> ThreadRecord:
    """Look up a thread or answer 404 like the API."""
    thread = state.stores.threads.get(thread_id)
    if thread is None:
        raise not_found(f"No thread found with id '{thread_id}'.")
    return thread


def get_run(state: SimState, thread_id: str, run_id: str) -> RunRecord:
    """Look up a run of a thread or answer 404 like the API."""
    get_thread(state, thread_id)
    run = state.stores.runs.get(run_id)
    if run is None or run.thread_id != thread_id:
        raise not_found(f"No run found with id '{run_id}'.")
    return run


def refresh(state: SimState, run: RunRecord) -> RunRecord:
    """Advance ``run`` to now; on completion post the assistant's message once."""
    run.advance(state.now())
    if run.status == "completed" and not run.message_added and run.terminal_at is not None:
        thread = state.stores.threads.get(run.thread_id)
        if thread is not None:
            text = f"Simulated answer to: {run.prompt_text}".rstrip()
            thread.add_message(
                message_payload(
                    alnum_id(state.rng, "msg"),
                    thread.id,
                    "assistant",
                    text,
                    run.terminal_at,
                    assistant_id=run.assistant_id,
                    run_id=run.id,
                )
            )
        run.message_added = True
    return run


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(str(p) for p in parts)
    raise bad_request("Invalid type for 'content': expected a string or an array.", "content")


def _add_message(state: SimState, thread: ThreadRecord, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise bad_request("Invalid message: expected an object.", "messages")
    role = raw.get("role")
    if role not in ("user", "assistant"):
        raise bad_request(
            f"Invalid value: {role!r}. Supported values are: 'user' and 'assistant'.", "role"
        )
    if "content" not in raw:
        raise bad_request("Missing required parameter: 'content'.", "content")
    message = message_payload(
        alnum_id(state.rng, "msg"),
        thread.id,
        str(role),
        _content_text(raw["content"]),
        state.now(),
        metadata=validation.metadata(raw.get("metadata")),
        attachments=raw.get("attachments") or [],
    )
    thread.add_message(message)
    return message


def create_thread(state: SimState, body: dict[str, Any]) -> ThreadRecord:
    """``POST /v1/threads`` with optional ``messages``, ``metadata``, ``tool_resources``."""
    now = state.now()
    metadata = validation.metadata(body.get("metadata"))
    thread = ThreadRecord(
        id=alnum_id(state.rng, "thread"),
        created=now,
        metadata=metadata,
        tool_resources=body.get("tool_resources"),
    )
    for raw in body.get("messages") or []:
        _add_message(state, thread, raw)
    state.stores.threads[thread.id] = thread
    state.stats.register(thread.id, "thread", now, metadata)
    return thread


def create_message(state: SimState, thread_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/threads/{id}/messages``."""
    thread = get_thread(state, thread_id)
    active = _active_run(state, thread)
    if active is not None:
        raise bad_request(f"Can't add messages to {thread.id} while a run {active.id} is active.")
    state.stats.touch(thread_id, "messages_create")
    return _add_message(state, thread, body)


def list_messages(state: SimState, thread_id: str, query: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/threads/{id}/messages`` (desc by default, ``after``, ``run_id`` filter)."""
    thread = get_thread(state, thread_id)
    for run_id in thread.run_ids:
        refresh(state, state.stores.runs[run_id])
    state.stats.touch(thread_id, "messages_list")
    items, positions = thread.messages, thread.positions
    if query.get("run_id"):
        items = [m for m in items if m["run_id"] == query["run_id"]]
        positions = {m["id"]: index for index, m in enumerate(items)}
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise bad_request("Invalid 'limit': expected an integer.", "limit") from None
    return list_page(
        items, positions, limit=limit, order=query.get("order", "desc"), after=query.get("after")
    )


def _active_run(state: SimState, thread: ThreadRecord) -> RunRecord | None:
    """The thread's non-terminal run, if any (the API allows only one at a time)."""
    for run_id in reversed(thread.run_ids):
        run = refresh(state, state.stores.runs[run_id])
        if run.status not in TERMINAL_RUN:
            return run
    return None


def _normalize_tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("Invalid type for 'tools': expected an array.", "tools")
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(raw):
        if not isinstance(tool, dict) or "type" not in tool:
            raise bad_request(
                f"Missing required parameter: 'tools[{index}].type'.", f"tools[{index}].type"
            )
        if tool["type"] == "function":
            function = tool.get("function")
            if not isinstance(function, dict) or not function.get("name"):
                raise bad_request(
                    f"Missing required parameter: 'tools[{index}].function.name'.",
                    f"tools[{index}].function.name",
                )
            tools.append(
                {
                    "type": "function",
                    "function": {
                        "name": function["name"],
                        "description": function.get("description", ""),
                        "parameters": function.get("parameters")
                        or {"type": "object", "properties": {}},
                        "strict": bool(function.get("strict", False)),
                    },
                }
            )
        else:
            tools.append(dict(tool))
    return tools


def create_run(state: SimState, thread_id: str, body: dict[str, Any]) -> RunRecord:
    """``POST /v1/threads/{id}/runs``: plan segments, tool rounds, expiry."""
    thread = get_thread(state, thread_id)
    assistant_id = validation.required_str(body, "assistant_id")
    metadata = validation.metadata(body.get("metadata"))
    tools = _normalize_tools(body.get("tools"))
    active = _active_run(state, thread)
    if active is not None:
        raise bad_request(f"Thread {thread.id} already has an active run {active.id}.")
    for raw in body.get("additional_messages") or []:
        _add_message(state, thread, raw)
    now = state.now()
    config = state.config
    timeline = plan(metadata, config, state.rng, now, allowed_outcomes=RUN_OUTCOMES)
    expires_s = meta_float(metadata, "sim_expires_s")
    lag = meta_float(metadata, "sim_submit_lag_s")
    user_texts = [m["content"][0]["text"]["value"] for m in thread.messages if m["role"] == "user"]
    run = RunRecord(
        id=alnum_id(state.rng, "run"),
        thread_id=thread.id,
        assistant_id=assistant_id,
        model=str(body.get("model") or "gpt-4o"),
        instructions=str(body.get("instructions") or ""),
        tools=tools,
        metadata=metadata,
        created=now,
        queue_s=timeline.queue_s,
        segment_s=timeline.duration_s,
        outcome=timeline.outcome,
        plan=tool_plan(metadata, tools),
        expires_at=now + (config.run_expires_s if expires_s is None else expires_s),
        submit_lag_s=config.submit_lag_s if lag is None else lag,
        cancel_lag_s=config.run_cancel_lag_s,
        prompt_text=user_texts[-1] if user_texts else "",
        new_call_id=lambda: alnum_id(state.rng, "call"),
    )
    state.stores.runs[run.id] = run
    thread.run_ids.append(run.id)
    state.stats.register(run.id, "run", now, metadata, counts_as_create=True)
    return refresh(state, run)


def retrieve_run(state: SimState, thread_id: str, run_id: str) -> RunRecord:
    """``GET /v1/threads/{id}/runs/{run_id}``."""
    run = get_run(state, thread_id, run_id)
    state.stats.touch(run_id, "retrieve")
    return refresh(state, run)


def list_runs(state: SimState, thread_id: str) -> dict[str, Any]:
    """``GET /v1/threads/{id}/runs`` (newest first, one page)."""
    thread = get_thread(state, thread_id)
    data = [refresh(state, state.stores.runs[r]).render() for r in reversed(thread.run_ids)]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": False,
    }


def cancel_run(state: SimState, thread_id: str, run_id: str) -> RunRecord:
    """``POST .../cancel``: ``cancelling`` now, ``cancelled`` after the cancel lag."""
    run = refresh(state, get_run(state, thread_id, run_id))
    state.stats.touch(run_id, "cancel")
    if run.status in TERMINAL_RUN or run.status == "cancelling":
        raise bad_request(f"Cannot cancel run with status '{run.status}'.")
    run.cancel_requested_at = state.now()
    return refresh(state, run)


def submit_tool_outputs(
    state: SimState, thread_id: str, run_id: str, body: dict[str, Any]
) -> RunRecord:
    """``POST .../submit_tool_outputs``: all outputs at once, each call id only once."""
    run = refresh(state, get_run(state, thread_id, run_id))
    state.stats.touch(run_id, "submit_tool_outputs")
    outputs = body.get("tool_outputs")
    if not isinstance(outputs, list):
        raise bad_request("Missing required parameter: 'tool_outputs'.", "tool_outputs")
    ids = [str(o.get("tool_call_id")) for o in outputs if isinstance(o, dict)]
    # Counted before the checks: a refused repeat is still a client answering a call twice.
    state.stats.count_tool_outputs(ids)
    if run.status != "requires_action":
        raise bad_request(f'Runs in status "{run.status}" do not accept tool outputs.')
    repeated = sorted(set(ids) & run.submitted_ids)
    if not run.awaiting_outputs or repeated:
        raise bad_request(
            "Tool outputs have already been submitted for tool call(s): "
            f"{', '.join(repeated or sorted(ids))}.",
            "tool_outputs",
        )
    expected = {call["id"] for call in run.tool_calls}
    if set(ids) != expected or len(ids) != len(expected):
        raise bad_request(
            f"Expected tool outputs for call_ids {sorted(expected)}, got {sorted(ids)}.",
            "tool_outputs",
        )
    run.accept_outputs(state.now())
    return refresh(state, run)
