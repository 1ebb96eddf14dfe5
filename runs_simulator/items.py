"""Building and normalizing Responses/Conversations items.

Why: the API stores what clients send in a canonical shape (a string becomes a
``message`` with ``input_text`` content, items get ids and a status). Conversation listings
and response outputs must come back in that canonical shape or the SDK's discriminated
unions will not parse them.
"""

from __future__ import annotations

import random
from typing import Any

from .errors import bad_request
from .ids import hex_id

Item = dict[str, Any]


def _text_part(role: str, text: str) -> dict[str, Any]:
    """A content part for ``text``: assistants speak ``output_text``, others ``input_text``."""
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}


def _normalize_part(role: str, part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return _text_part(role, part)
    if not isinstance(part, dict) or "type" not in part:
        raise bad_request("Invalid content part: expected an object with a 'type'.", "input")
    normalized = dict(part)
    if normalized["type"] == "output_text":
        normalized.setdefault("annotations", [])
        normalized.setdefault("logprobs", [])
    return normalized


def normalize_item(rng: random.Random, raw: Any) -> Item:
    """Turn one input item (as a client may send it) into its stored form."""
    if isinstance(raw, str):
        raw = {"type": "message", "role": "user", "content": raw}
    if not isinstance(raw, dict):
        raise bad_request("Invalid input item: expected an object.", "input")
    kind = raw.get("type") or ("message" if "role" in raw else None)
    if kind == "message":
        role = str(raw.get("role", "user"))
        content = raw.get("content", "")
        parts = (
            [_text_part(role, content)]
            if isinstance(content, str)
            else [_normalize_part(role, part) for part in content]
        )
        return {
            "type": "message",
            "id": raw.get("id") or hex_id(rng, "msg"),
            "status": raw.get("status") or "completed",
            "role": role,
            "content": parts,
        }
    if kind == "function_call_output":
        if not raw.get("call_id"):
            raise bad_request("Missing required parameter: 'input[].call_id'.", "input")
        return {
            "type": "function_call_output",
            "id": raw.get("id") or hex_id(rng, "fco"),
            "call_id": raw["call_id"],
            "output": raw.get("output", ""),
            "status": raw.get("status") or "completed",
        }
    if kind == "function_call":
        return {
            "type": "function_call",
            "id": raw.get("id") or hex_id(rng, "fc"),
            "call_id": raw.get("call_id", ""),
            "name": raw.get("name", ""),
            "arguments": raw.get("arguments", "{}"),
            "status": raw.get("status") or "completed",
        }
    if kind is None:
        raise bad_request("Invalid input item: missing 'type'.", "input")
    stored = dict(raw)
    stored.setdefault("id", hex_id(rng, "item"))
    return stored


def normalize_input(rng: random.Random, raw: Any) -> list[Item]:
    """Normalize a request's ``input``/``items`` (string or list) into stored items."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [normalize_item(rng, raw)]
    if not isinstance(raw, list):
        raise bad_request("Invalid type for 'input': expected a string or an array.", "input")
    return [normalize_item(rng, item) for item in raw]


def input_text(items: list[Item]) -> str:
    """The concatenated text of user-visible input, used to word the simulated answer."""
    texts: list[str] = []
    for item in items:
        if item.get("type") == "message":
            for part in item.get("content", []):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        elif item.get("type") == "function_call_output":
            output = item.get("output")
            texts.append(output if isinstance(output, str) else "[tool output]")
    return " ".join(texts)


def assistant_message(item_id: str, text: str, status: str = "completed") -> Item:
    """An ``OutputMessage`` item carrying one ``output_text`` part."""
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call(item_id: str, call_id: str, name: str, arguments: str) -> Item:
    """A ``function_call`` output item (the model asking the client to run a tool)."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def token_estimate(text: str) -> int:
    """A cheap, deterministic token count (about four characters per token)."""
    return max(1, (len(text) + 3) // 4)
