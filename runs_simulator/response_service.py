"""Responses endpoints' logic: create, retrieve, cancel, and the tool-round chains.

Why here and not in the routes: creation decides everything about a response up front
(timeline, tool call or message, conversation bookkeeping, webhook timer), so reads stay
pure and cheap.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import response_options, response_output, validation
from .config import RESPONSE_OUTCOMES
from .conversation_service import get_conversation, settle
from .errors import bad_request, not_found
from .ids import alnum_id, hex_id
from .items import Item, function_call, input_text, normalize_input
from .responses import ResponseRecord
from .state import SimState, ToolChain
from .timeline import TERMINAL_RESPONSE, Timeline, plan
from .tool_scenario import sim_metadata, tool_plan

_ECHOED = ("max_tool_calls", "parallel_tool_calls", "temperature", "top_p", "truncation")


def normalize_tools(raw: Any) -> list[dict[str, Any]]:
    """Echo tools the way the API does (function tools gain ``strict`` and ``parameters``)."""
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
            if not tool.get("name"):
                raise bad_request(
                    f"Missing required parameter: 'tools[{index}].name'.", f"tools[{index}].name"
                )
            tools.append(
                {
                    "type": "function",
                    "name": tool["name"],
                    "description": tool.get("description"),
                    "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
                    "strict": tool.get("strict", True),
                }
            )
        else:
            tools.append(dict(tool))
    return tools


def _conversation_id(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        return str(raw["id"])
    raise bad_request(
        "Invalid type for 'conversation': expected a string or an object with an 'id'.",
        "conversation",
    )


def get_response(state: SimState, response_id: str) -> ResponseRecord:
    """Look up a stored response or answer 404 like the API."""
    record = state.stores.responses.get(response_id)
    if record is None:
        raise not_found(f"Response with id '{response_id}' not found.")
    return record


def _find_chain(
    state: SimState, previous: ResponseRecord | None, conversation_chain: str | None
) -> ToolChain | None:
    chain_id = previous.chain_id if previous is not None else conversation_chain
    return state.stores.chains.get(chain_id) if chain_id else None


def create(state: SimState, body: dict[str, Any]) -> ResponseRecord:
    """``POST /v1/responses``: plan the whole life of a response and store it."""
    model = validation.required_str(body, "model")
    if body.get("stream"):
        raise bad_request("The simulator does not stream; create with stream=false.", "stream")
    metadata = validation.metadata(body.get("metadata"))
    conversation_id = _conversation_id(body.get("conversation"))
    previous_id = body.get("previous_response_id")
    if conversation_id and previous_id:
        raise bad_request(
            "Mutually exclusive parameters: Ensure you are only providing one of: "
            "'previous_response_id' or 'conversation'.",
            "conversation",
        )
    conversation = get_conversation(state, conversation_id) if conversation_id else None
    previous = None
    if previous_id:
        previous = state.stores.responses.get(str(previous_id))
        if previous is None:
            raise not_found(
                f"Previous response with id '{previous_id}' not found.", "previous_response_id"
            )
    items = normalize_input(state.rng, body.get("input"))
    tools = normalize_tools(body.get("tools"))
    background = bool(body.get("background", False))
    store = bool(body.get("store", True))
    if background and not store:
        raise bad_request("Background mode requires 'store' to be true.", "store")
    options = response_options.parse(body, background=background)
    response_output.sim_output(metadata)  # a bad pin is refused before any bookkeeping

    chain = _find_chain(state, previous, conversation.chain_id if conversation else None)
    effective = {**(chain.inherited if chain else {}), **metadata}
    if chain is None:
        tool = tool_plan(effective, tools)
        if tool is not None:
            chain = ToolChain(
                id=hex_id(state.rng, "chain", 8), plan=tool, inherited=sim_metadata(metadata)
            )
            state.stores.chains[chain.id] = chain
    if chain is not None and any(item["type"] == "function_call_output" for item in items):
        chain.answered += 1
    wants_tool = chain is not None and chain.answered < chain.plan.rounds

    now = state.now()
    flex = options.service_tier == "flex"
    timeline = plan(
        effective,
        state.config,
        state.rng,
        now,
        allowed_outcomes=RESPONSE_OUTCOMES,
        instant=not background,
        window_s=options.window_s,
        slowdown=state.config.flex_slowdown if flex else 1.0,
    )
    if wants_tool:
        timeline = replace(timeline, outcome="completed")
    prompt = input_text(items)
    tool_call: Item | None = None
    if wants_tool and chain is not None:
        tool_call = function_call(
            hex_id(state.rng, "fc"),
            alnum_id(state.rng, "call"),
            chain.plan.name,
            chain.plan.arguments,
        )
    planned = response_output.answer(
        state.rng,
        prompt=prompt,
        options=options,
        metadata=effective,
        outcome=timeline.outcome,
        tool_call=tool_call,
    )
    record = ResponseRecord(
        id=hex_id(state.rng, "resp"),
        timeline=replace(timeline, outcome=planned.outcome),
        model=model,
        background=background,
        store=store,
        metadata=metadata,
        instructions=body.get("instructions"),
        tools=tools,
        tool_choice=body.get("tool_choice", "auto"),
        extras={key: body[key] for key in _ECHOED if key in body},
        input_items=items,
        prompt_text=prompt,
        output_items=planned.output,
        usage=planned.usage,
        options=options,
        conversation_id=conversation.id if conversation else None,
        previous_response_id=str(previous_id) if previous_id else None,
        chain_id=chain.id if chain else None,
        error_code=effective.get("sim_error_code") or "server_error",
    )
    if store:
        state.stores.responses[record.id] = record
    state.stats.register(record.id, "response", now, metadata, counts_as_create=True)
    state.stats.count_tool_outputs(
        str(item["call_id"]) for item in items if item["type"] == "function_call_output"
    )
    if conversation is not None:
        settle(state, conversation)  # earlier responses' output precedes this input
        conversation.append(items)
        conversation.pending_responses.append(record.id)
        if chain is not None:
            conversation.chain_id = chain.id
    if background and state.webhooks is not None:
        state.webhooks.schedule_response(record)
    return record


def standalone(
    state: SimState, body: dict[str, Any], started: float, ended: float
) -> ResponseRecord:
    """A batch line's response: ``body`` checked like a create (same 400s), answered in one
    turn (no background, conversation or previous response: a batch line stands alone) and
    ended at ``ended``. Nothing is stored, counted or announced."""
    model = validation.required_str(body, "model")
    for key in ("stream", "background", "conversation", "previous_response_id"):
        if body.get(key):
            raise bad_request(f"'{key}' is not supported in batch requests.", key)
    metadata = validation.metadata(body.get("metadata"))
    if metadata.get("sim_outcome", "completed") not in RESPONSE_OUTCOMES:
        raise bad_request(
            f"Invalid metadata value for 'sim_outcome': {metadata['sim_outcome']!r}",
            "metadata.sim_outcome",
        )
    items = normalize_input(state.rng, body.get("input"))
    tools = normalize_tools(body.get("tools"))
    options = response_options.parse(body, background=False)
    prompt = input_text(items)
    tool = tool_plan(metadata, tools)
    tool_call = None
    if tool is not None:
        tool_call = function_call(
            hex_id(state.rng, "fc"), alnum_id(state.rng, "call"), tool.name, tool.arguments
        )
    outcome = "incomplete" if metadata.get("sim_outcome") == "incomplete" else "completed"
    planned = response_output.answer(
        state.rng,
        prompt=prompt,
        options=options,
        metadata=metadata,
        outcome=outcome,
        tool_call=tool_call,
    )
    return ResponseRecord(
        id=hex_id(state.rng, "resp"),
        timeline=Timeline(started, 0.0, max(0.0, ended - started), planned.outcome),
        model=model,
        background=False,
        store=bool(body.get("store", True)),
        metadata=metadata,
        instructions=body.get("instructions"),
        tools=tools,
        tool_choice=body.get("tool_choice", "auto"),
        extras={key: body[key] for key in _ECHOED if key in body},
        input_items=items,
        prompt_text=prompt,
        output_items=planned.output,
        usage=planned.usage,
        options=options,
    )


def retrieve(state: SimState, response_id: str) -> ResponseRecord:
    """``GET /v1/responses/{id}``: nothing to compute beyond the lookup (status is lazy)."""
    record = get_response(state, response_id)
    state.stats.touch(response_id, "retrieve")
    return record


def cancel(state: SimState, response_id: str) -> ResponseRecord:
    """``POST /v1/responses/{id}/cancel``: only non-terminal background responses."""
    record = get_response(state, response_id)
    state.stats.touch(response_id, "cancel")
    now = state.now()
    if not record.background:
        raise bad_request("Cannot cancel a synchronous response.")
    status = record.status(now)
    if status in TERMINAL_RESPONSE:
        raise bad_request(f"Cannot cancel a {status} response.")
    record.cancelled_at = now
    record.webhook_token += 1
    if state.webhooks is not None:
        state.webhooks.schedule_response(record)
    return record
