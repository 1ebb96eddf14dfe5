"""Run options (issue 16): validated here, before anything is stored or sent.

``create_run``, the API, the admin and ``startrun`` all go through ``clean``, so a combination
OpenAI would refuse (a 2h window on flex processing, a schema that is not an object) is refused
in one place, with one message, before a row is written. The SDK's own types are the reference
for the accepted values (``ServiceTier``, ``ReasoningEffort``, ``BackgroundOptions``).

Pure but for reading settings (the time scale of a window's length).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, get_args

from django.core.exceptions import ValidationError
from openai.types.responses.service_tier import ServiceTier
from openai.types.shared.reasoning_effort import ReasoningEffort

from .conf import settings
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
MAX_SCHEMA_BYTES = 100_000
MAX_SCHEMA_DEPTH = 32
FORMAT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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


def clean_response_format(value: Any) -> dict[str, Any] | None:
    """A pydantic model class or a JSON schema dict -> ``{"name", "schema", "strict"}``.

    The run stores the JSON schema, never the class: a row must be readable by any process (the
    worker, the admin) and by the next deploy, where the class may have changed or be gone.
    """
    if value is None or value == {}:
        return None
    if isinstance(value, type):
        return _from_model(value)
    if not isinstance(value, dict):
        raise ValidationError(
            "response_format must be a JSON schema (a dict) or a pydantic model class, "
            f"not {type(value).__name__}"
        )
    if isinstance(value.get("schema"), dict):  # {"name", "schema", "strict"} (text.format)
        extra = set(value) - {"name", "schema", "strict", "description", "type"}
        if extra or value.get("type", "json_schema") != "json_schema":
            raise ValidationError(
                f"response_format has unexpected keys {sorted(extra)} or type: give "
                "{'name', 'schema', 'strict'} or a bare JSON schema"
            )
        name, schema = value.get("name") or "output", value["schema"]
        strict = value.get("strict", True)
        description = value.get("description") or ""
    else:  # a bare schema
        name, schema, strict, description = _name(value.get("title")), value, True, ""
    if not isinstance(name, str) or not FORMAT_NAME.match(name):
        raise ValidationError(
            f"response_format name {name!r} must be 1-64 letters, digits, '_' or '-'"
        )
    if not isinstance(strict, bool):
        raise ValidationError("response_format strict must be true or false")
    _check_schema(schema, strict)
    fmt: dict[str, Any] = {"name": name, "schema": schema, "strict": strict}
    if description:
        fmt["description"] = str(description)
    return fmt


def _from_model(cls: type) -> dict[str, Any]:
    from pydantic import BaseModel

    if not issubclass(cls, BaseModel):
        raise ValidationError(f"response_format class {cls.__name__} is not a pydantic BaseModel")
    # The SDK's own conversion (what ``responses.parse`` sends): strict-mode ready, with
    # additionalProperties false and every property required.
    from openai.lib._pydantic import to_strict_json_schema

    schema = to_strict_json_schema(cls)
    _check_schema(schema, strict=True)
    return {"name": _name(cls.__name__), "schema": schema, "strict": True}


def _name(title: Any) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", title)[:64] if isinstance(title, str) else ""
    return cleaned or "output"


def _check_schema(schema: Any, strict: bool) -> None:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ValidationError(
            "response_format schema must be a JSON schema of an object "
            '({"type": "object", "properties": ...}): OpenAI returns an object at the top'
        )
    try:
        text = json.dumps(schema, allow_nan=False, ensure_ascii=False)
        size = len(text.encode("utf-8"))  # lone surrogates fail here, as in PostgreSQL
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"response_format schema is not JSON-serialisable: {exc}") from None
    if "\x00" in text:
        raise ValidationError("response_format schema may not contain NUL characters")
    if size > MAX_SCHEMA_BYTES:
        raise ValidationError(f"response_format schema is {size} bytes; at most {MAX_SCHEMA_BYTES}")
    from jsonschema import SchemaError, validators

    _walk(schema, "$", strict, 0)
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValidationError(
            f"response_format schema is invalid at {where}: {exc.message}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown $schema: bad input, not a 500
        raise ValidationError(f"response_format schema is invalid: {exc}") from None


#: Keywords whose value is a schema or a list of them; keywords mapping names to schemas.
_SUBSCHEMA = frozenset(
    "items additionalProperties not if then else contains propertyNames unevaluatedItems "  # noqa: SIM905
    "unevaluatedProperties additionalItems contentSchema anyOf allOf oneOf prefixItems".split()
)
_SCHEMA_MAPS = frozenset(
    "properties $defs definitions patternProperties dependentSchemas dependencies".split()  # noqa: SIM905
)
#: References a validator resolves: any that is not local (``#...``) would make it fetch.
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")


def _walk(node: Any, where: str, strict: bool, depth: int, schema: bool = True) -> None:
    """What JSON Schema allows but we do not: remote references (a validation must never fetch
    a URL; OpenAI takes local ones only), absurd nesting, and in strict mode (OpenAI's rule,
    else a 400 at create) an open object or a property not required. Every dict and list is
    visited, so a reference under ``if`` or an unknown keyword is refused too; the strict rule
    applies to schemas only (``schema``), not to data such as an ``enum``'s values."""
    if depth > MAX_SCHEMA_DEPTH:
        raise ValidationError(f"response_format schema nests deeper than {MAX_SCHEMA_DEPTH}")
    if isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, f"{where}[{i}]", strict, depth + 1, schema)
        return
    if not isinstance(node, dict):
        return
    for keyword in _REFS:
        ref = node.get(keyword)
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
            raise ValidationError(
                f"response_format schema: only local {keyword} ('#/...'); at {where}"
            )
    if schema and strict and (node.get("type") == "object" or "properties" in node):
        props = node.get("properties") or {}
        missing = sorted(set(props) - set(node.get("required") or []))
        if node.get("additionalProperties") is not False or missing:
            raise ValidationError(
                f"strict structured output needs additionalProperties: false and every property "
                f"required; at {where}: "
                + (f"not required: {', '.join(missing)}" if missing else "the object is open")
                + " (or pass strict: false)"
            )
    for key, child in node.items():
        if key in _SCHEMA_MAPS and isinstance(child, dict):
            for name, sub in child.items():
                _walk(sub, f"{where}.{name}", strict, depth + 1, schema)
        else:
            _walk(child, f"{where}.{key}", strict, depth + 1, schema and key in _SUBSCHEMA)


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
    return value
