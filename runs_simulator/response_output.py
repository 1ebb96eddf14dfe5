"""What a response answers: its output items, its usage, and whether it ran out of tokens.

Why decided at creation: a response's output and token counts follow from its request alone
(prompt, ``text.format``, reasoning effort, ``max_output_tokens``, ``prompt_cache_key``) and its
planned outcome, so computing them once keeps every read a pure render, and a batch line gets
exactly what the same body would get from ``POST /v1/responses``.

Usage is a deterministic estimate (about four characters a token): ``prompt_cache_key`` reports
half the input as cached, a reasoning effort adds its ``reasoning_tokens`` (counted in
``output_tokens``, as the API does), and an answer that would exceed ``max_output_tokens`` is cut
there and ends ``incomplete`` with reason ``max_output_tokens``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import structured
from .errors import bad_request
from .ids import hex_id
from .items import Item, assistant_message, token_estimate
from .response_options import Options

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Answer:
    """The planned output, its usage, and the outcome (``incomplete`` when the cap cut it)."""

    output: list[Item]
    usage: dict[str, Any]
    outcome: str


def sim_output(metadata: Mapping[str, str]) -> str | None:
    """The ``sim_output`` pin (``schema_mismatch`` or ``not_json``), 400 when unknown."""
    value = metadata.get("sim_output") or None
    if value is not None and value not in structured.SIM_OUTPUTS:
        raise bad_request(
            f"Invalid metadata value for 'sim_output': {value!r}; expected one of "
            f"{', '.join(structured.SIM_OUTPUTS)}",
            "metadata.sim_output",
        )
    return value


def usage(prompt: str, visible_tokens: int, reasoning_tokens: int, cached: bool) -> dict[str, Any]:
    """``ResponseUsage`` with both detail objects (the SDK requires them)."""
    input_tokens = token_estimate(prompt) + 8
    output_tokens = visible_tokens + reasoning_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": input_tokens // 2 if cached else 0,
            "cache_write_tokens": 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def answer(
    rng: random.Random,
    *,
    prompt: str,
    options: Options,
    metadata: Mapping[str, str],
    outcome: str,
    tool_call: Item | None = None,
) -> Answer:
    """Plan the output of a response whose timeline ends in ``outcome``."""
    pin = sim_output(metadata)
    cached = options.prompt_cache_key is not None
    reasoning = options.reasoning_tokens
    if tool_call is not None:
        visible = token_estimate(str(tool_call["name"]) + str(tool_call["arguments"]))
        return Answer([tool_call], usage(prompt, visible, reasoning, cached), outcome)
    text = structured.answer_text(options.text["format"], prompt, pin)
    if text is None:
        text = f"Simulated answer to: {prompt}"
    status = "completed"
    if outcome == "incomplete":
        text, status = text[: max(1, len(text) // 2)], "incomplete"
    cap = options.max_output_tokens
    over = cap is not None and token_estimate(text) + reasoning > cap
    if cap is not None and over and outcome in ("completed", "incomplete"):
        reasoning = min(reasoning, cap)
        text = text[: (cap - reasoning) * CHARS_PER_TOKEN]
        outcome, status = "incomplete", "incomplete"
    output = [assistant_message(hex_id(rng, "msg"), text, status=status)] if text else []
    visible = token_estimate(text) if text else 0
    return Answer(output, usage(prompt, visible, reasoning, cached), outcome)
