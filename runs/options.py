"""Run options (issue 16): validated here, before anything is stored or sent.

``create_run``, the API, the admin and ``startrun`` all go through ``clean``, so a combination
OpenAI would refuse (a 2h window on flex processing, a schema that is not an object) is refused
in one place, with one message, before a row is written. The SDK's own types are the reference
for the accepted values (``ServiceTier``, ``ReasoningEffort``, ``BackgroundOptions``).

Pure but for reading settings (the time scale of a window's length).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, get_args

from django.core.exceptions import ValidationError
from openai.types.responses.service_tier import ServiceTier
from openai.types.shared.reasoning_effort import ReasoningEffort

from .arguments import check_text
from .conf import settings
from .response_formats import clean_response_format
from .status import WINDOW_S, CompletionWindow, Mode


def _literals(alias: Any) -> tuple[str, ...]:
    """The strings of an ``Optional[Literal[...]]`` alias of the SDK."""
    for arg in get_args(alias):
        if get_args(arg):
            return tuple(get_args(arg))
    return tuple(get_args(alias))


#: The values the installed SDK accepts: a newer SDK's new values are accepted with it.
SERVICE_TIERS = _literals(ServiceTier)
REASONING_EFFORTS = _literals(ReasoningEffort)
#: The windows our column stores (tests/test_run_options.py checks the SDK accepts the same).
WINDOWS = tuple(CompletionWindow.values)
#: Tiers the 2h/8h windows accept: they are discounted *standard* processing.
WINDOW_TIERS = ("", "default")
#: Tiers the price table prices (``mode_of``); any other tier's runs have no cost.
PRICED_TIERS = ("", "default", "flex")
#: OpenAI's floor for ``max_output_tokens``; the ceiling is above any model's output limit and
#: only catches a typo (an extra zero) before it reaches the API.
MIN_OUTPUT_TOKENS, MAX_OUTPUT_TOKENS = 16, 1_000_000
MAX_KEY_LENGTH = 64  # prompt_cache_key and safety_identifier: our columns' (and OpenAI's) limit


@dataclass(frozen=True)
class RunOptions:
    """The options of one run, as stored on it (``fields()``)."""

    completion_window: str = "soonest"
    service_tier: str = ""
    response_format: dict[str, Any] | None = None
    reasoning_effort: str = ""
    max_output_tokens: int | None = None
    prompt_cache_key: str = ""
    safety_identifier: str = ""

    @property
    def mode(self) -> str:
        return mode_of(self.completion_window, self.service_tier)

    def fields(self) -> dict[str, Any]:
        """The run's columns, ``mode`` included."""
        return {**asdict(self), "mode": self.mode}


def clean(
    *,
    completion_window: str | None = None,
    service_tier: str | None = None,
    response_format: Any = None,
    reasoning_effort: str | None = None,
    max_output_tokens: int | None = None,
    prompt_cache_key: str | None = None,
    safety_identifier: str | None = None,
) -> RunOptions:
    """Every option checked, alone and together; ``ValidationError`` names the first bad one."""
    window = _choice(completion_window or "soonest", WINDOWS, "completion_window")
    tier = _choice(service_tier or "", SERVICE_TIERS, "service_tier", blank=True)
    if window in WINDOW_S and tier not in WINDOW_TIERS:
        raise ValidationError(
            f"the 2h and 8h windows need standard processing: drop service_tier={tier!r} "
            "(or use completion_window='soonest')"
        )
    return RunOptions(
        completion_window=window,
        service_tier=tier,
        response_format=clean_response_format(response_format),
        reasoning_effort=_choice(
            reasoning_effort or "", REASONING_EFFORTS, "reasoning_effort", blank=True
        ),
        max_output_tokens=_output_tokens(max_output_tokens),
        prompt_cache_key=_key(prompt_cache_key, "prompt_cache_key"),
        safety_identifier=_key(safety_identifier, "safety_identifier"),
    )


def of_run(run: Any) -> dict[str, Any]:
    """A run's options as ``create_run`` keyword arguments (``retry_run`` copies them)."""
    return {name: getattr(run, name) for name in RunOptions.__dataclass_fields__}


def mode_of(window: str, tier: str) -> str:
    """How a run is processed and billed. Batch runs are set to ``batch`` by their batch.

    Only the tiers the price table prices get a priced mode: none or ``default`` (standard, or a
    window's discount), ``flex``. Every other tier (``priority``, ``scale``, ``fast``,
    ``ultrafast``, and whatever a newer SDK adds) is ``OTHER_TIER``, whose cost stays null:
    pricing a priority run at standard rates would be a made-up number. ``auto`` too: it means
    "the project's default tier", which is standard unless the project bought Scale Tier, and
    we cannot see the project's settings, so calling it standard would be a guess.
    """
    if tier == "flex":
        return Mode.FLEX
    if tier not in PRICED_TIERS:
        return Mode.OTHER_TIER
    return {"2h": Mode.WINDOW_2H, "8h": Mode.WINDOW_8H}.get(window, Mode.STANDARD)


def window_s(window: str) -> float | None:
    """A window's length on our clock (``RUNS_TIME_SCALE`` applied); None for ``soonest``."""
    length = WINDOW_S.get(window)
    return None if length is None else length * float(settings.RUNS_TIME_SCALE)


def deadline_s(window: str, requested: float | None) -> float:
    """The deadline a run gets: ``requested``, else the window plus its grace, else the default.

    A windowed run may legitimately finish at its window's end, so a shorter deadline would
    expire (and cancel) a run that was on time: it is refused.
    """
    if requested is not None and (
        isinstance(requested, bool) or not isinstance(requested, int | float)
    ):
        raise ValidationError(f"deadline_s must be a number of seconds, not {requested!r}")
    length = window_s(window)
    if length is None:
        return float(settings.RUNS_DEADLINE_S if requested is None else requested)
    if requested is None:
        return length + float(settings.RUNS_WINDOW_GRACE_S) * float(settings.RUNS_TIME_SCALE)
    if requested < length:
        raise ValidationError(
            f"deadline_s={requested:g} is shorter than the {window} window ({length:g} s "
            "on this time scale): the run could expire while on time; give a longer deadline "
            "or none (the window plus RUNS_WINDOW_GRACE_S)"
        )
    return float(requested)


def _choice(value: Any, allowed: tuple[str, ...], what: str, *, blank: bool = False) -> str:
    if blank and value == "":
        return ""
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(f"unknown {what} {value!r}; expected one of: {', '.join(allowed)}")
    return value


def _output_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"max_output_tokens must be an integer, not {value!r}")
    if not MIN_OUTPUT_TOKENS <= value <= MAX_OUTPUT_TOKENS:
        raise ValidationError(
            f"max_output_tokens must be between {MIN_OUTPUT_TOKENS} and {MAX_OUTPUT_TOKENS}"
        )
    return value


def _key(value: Any, what: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH:
        raise ValidationError(f"{what} must be a string of at most {MAX_KEY_LENGTH} characters")
    return check_text(value, what)
