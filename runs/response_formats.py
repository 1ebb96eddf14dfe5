"""A run's ``response_format`` (structured output), checked before it is stored or sent: a
pydantic model class or a JSON schema becomes ``{"name", "schema", "strict"}``, or a
``ValidationError`` says what OpenAI (or our database) would refuse.

Why apart from the other run options (``runs.options``, which calls ``clean_response_format``):
a schema is a document, walked whole for what a validator must never do (fetch a remote
reference), what strict mode requires, and what PostgreSQL's ``jsonb`` refuses.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.exceptions import ValidationError

from . import storable
from .arguments import check_text

MAX_SCHEMA_BYTES = 100_000
MAX_SCHEMA_DEPTH = 32
FORMAT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    check_text(description, "response_format description")
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
    try:  # first: a schema that refers to itself is refused here, before any walk of it
        text = json.dumps(schema, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"response_format schema is not JSON-serialisable: {exc}") from None
    if problem := storable.json_problem(schema):
        raise ValidationError(f"response_format schema cannot be stored: {problem}")
    size = len(text.encode("utf-8"))
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
