"""The cheap-and-long options of ``POST /v1/responses``, checked and worded like the API.

Why one module: ``background_options`` (the discounted 2h/8h windows), ``service_tier`` (flex),
``text.format`` (structured outputs), ``reasoning``, ``max_output_tokens``, ``prompt_cache_key``
and ``safety_identifier`` each change what a response costs or how long it takes, and a client
that sends a combination the API refuses (a window with flex, a window without background) must
learn it here, with a 400 naming the parameter, not in production. Batch lines are checked by the
same function, so a bad line fails its batch's validation exactly as a bad create fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import structured
from .errors import bad_request
from .validation import type_name

WINDOWS = ("soonest", "2h", "8h")
#: A window's length in seconds of the real clock (``time_scale`` compresses it).
WINDOW_S = {"2h": 2 * 3600.0, "8h": 8 * 3600.0}
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
#: The tiers a 2h/8h window accepts: the windows require standard processing.
STANDARD_TIERS = (None, "auto", "default")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
SUMMARIES = ("auto", "concise", "detailed")
#: Reasoning tokens a response reports per effort (counted in ``output_tokens`` too, as the API
#: does, and so in what ``max_output_tokens`` bounds).
REASONING_TOKENS = {
    None: 0,
    "none": 0,
    "minimal": 8,
    "low": 32,
    "medium": 96,
    "high": 256,
    "xhigh": 512,
    "max": 1024,
}
MIN_OUTPUT_TOKENS = 16
SAFETY_IDENTIFIER_MAX = 64


@dataclass(frozen=True)
class Options:
    """What a create asked for, validated; ``service_tier`` is the processing actually used."""

    window: str = "soonest"
    continuation_id: str | None = None
    service_tier: str = "default"
    effort: str | None = None
    summary: str | None = None
    max_output_tokens: int | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    text: dict[str, Any] = field(default_factory=structured.default_text)

    @property
    def window_s(self) -> float | None:
        """The window's length (unscaled), or ``None`` for ``soonest``."""
        return WINDOW_S.get(self.window)

    @property
    def reasoning_tokens(self) -> int:
        """Reasoning tokens this effort spends."""
        return REASONING_TOKENS.get(self.effort, 0)


def _enum(value: Any, allowed: tuple[Any, ...], param: str) -> Any:
    if value not in allowed:
        shown = ", ".join(f"'{v}'" for v in allowed if v is not None)
        raise bad_request(
            f"Invalid value: {value!r}. Supported values are: {shown}.",
            param,
            code="invalid_value",
        )
    return value


def _optional_str(body: dict[str, Any], key: str, max_length: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(
            f"Invalid type for '{key}': expected a string, but got {type_name(value)} instead.",
            key,
            code="invalid_type",
        )
    if max_length is not None and len(value) > max_length:
        raise bad_request(
            f"Invalid '{key}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead.",
            key,
            code="string_above_max_length",
        )
    return value


def _object(body: dict[str, Any], key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(
            f"Invalid type for '{key}': expected an object, but got {type_name(value)} instead.",
            key,
            code="invalid_type",
        )
    for name in value:
        if name not in allowed:
            raise bad_request(
                f"Unknown parameter: '{key}.{name}'.", f"{key}.{name}", code="unknown_parameter"
            )
    return value


def _window(body: dict[str, Any], background: bool, tier: Any) -> tuple[str, str | None]:
    options = _object(body, "background_options", ("completion_window", "continuation_id"))
    window = options.get("completion_window", "soonest")
    _enum(window, WINDOWS, "background_options.completion_window")
    continuation = _optional_str(options, "continuation_id")
    if window in WINDOW_S:
        if not background:
            raise bad_request(
                f"The '{window}' completion window requires 'background' to be true.",
                "background",
            )
        if tier not in STANDARD_TIERS:
            raise bad_request(
                f"The '{window}' completion window requires standard processing; "
                f"'service_tier' {tier!r} is not supported with it.",
                "service_tier",
            )
    return window, continuation


def _max_output_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_output_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(
            "Invalid type for 'max_output_tokens': expected an integer, but got "
            f"{type_name(value)} instead.",
            "max_output_tokens",
            code="invalid_type",
        )
    if value < MIN_OUTPUT_TOKENS:
        raise bad_request(
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {value} instead.",
            "max_output_tokens",
            code="integer_below_min_value",
        )
    return value


def parse(body: dict[str, Any], *, background: bool) -> Options:
    """Check every option of a create body (all before anything is stored); 400 on the first
    bad one, naming its parameter."""
    tier = body.get("service_tier")
    if tier is not None:
        _enum(tier, SERVICE_TIERS, "service_tier")
    window, continuation = _window(body, background, tier)
    reasoning = _object(
        body, "reasoning", ("effort", "summary", "generate_summary", "context", "mode")
    )
    effort = reasoning.get("effort")
    if effort is not None:
        _enum(effort, EFFORTS, "reasoning.effort")
    summary = reasoning.get("summary", reasoning.get("generate_summary"))
    if summary is not None:
        _enum(summary, SUMMARIES, "reasoning.summary")
    return Options(
        window=window,
        continuation_id=continuation,
        service_tier="flex" if tier == "flex" else "default",
        effort=effort,
        summary=summary,
        max_output_tokens=_max_output_tokens(body),
        prompt_cache_key=_optional_str(body, "prompt_cache_key"),
        safety_identifier=_optional_str(body, "safety_identifier", SAFETY_IDENTIFIER_MAX),
        text=structured.parse_text(body.get("text")),
    )
