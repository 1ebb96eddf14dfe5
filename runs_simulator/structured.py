"""Structured outputs: ``text.format`` checked like the API, and answers generated from it.

Why: a client that asks for ``json_schema`` output must parse the answer and refuse one that
does not match. The simulator therefore answers with a JSON document built from the schema
(every property, the first enum value, one array item, ``$defs``/``$ref`` as pydantic emits
them), and on request (metadata ``sim_output``) with valid JSON that does *not* match it or with
text that is not JSON at all. Strict schemas are held to the API's strict-mode rules (every
object closed with ``additionalProperties: false``, every property required), so a schema the
real API would refuse is refused here too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import bad_request
from .validation import type_name

FORMATS = ("text", "json_schema", "json_object")
VERBOSITIES = ("low", "medium", "high")
SIM_OUTPUTS = ("schema_mismatch", "not_json")
NOT_JSON = 'Sure! Here is what you asked for: {"answer": '
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_DEPTH = 8
_STRINGS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def default_text() -> dict[str, Any]:
    """The ``text`` a response echoes when the request set none."""
    return {"format": {"type": "text"}, "verbosity": "medium"}


def _schema_error(name: str, context: tuple[str, ...], problem: str) -> Exception:
    return bad_request(
        f"Invalid schema for response_format '{name}': In context={context!r}, {problem}",
        "text.format.schema",
        code="invalid_json_schema",
    )


def _check_strict(name: str, node: Any, context: tuple[str, ...]) -> None:
    """The API's strict-mode rules, walked through every subschema."""
    if isinstance(node, list):
        for index, member in enumerate(node):
            _check_strict(name, member, (*context, str(index)))
        return
    if not isinstance(node, dict):
        return
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and "$ref" not in node:
        if node.get("additionalProperties") is not False:
            raise _schema_error(
                name,
                context,
                "'additionalProperties' is required to be supplied and to be false.",
            )
        properties = node.get("properties") or {}
        required = node.get("required") or []
        missing = [key for key in properties if key not in required]
        if missing:
            raise _schema_error(
                name,
                context,
                "'required' is required to be supplied and to be an array including every key "
                f"in properties. Missing '{missing[0]}'.",
            )
    for key in ("properties", "$defs", "definitions"):
        for child, sub in (node.get(key) or {}).items():
            _check_strict(name, sub, (*context, key, child))
    for key in ("items", "anyOf", "oneOf", "allOf", "prefixItems"):
        if key in node:
            _check_strict(name, node[key], (*context, key))


def _json_schema_format(raw: dict[str, Any]) -> dict[str, Any]:
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise bad_request(
            "Invalid 'text.format.name': expected a string of a-z, A-Z, 0-9, underscores or "
            "dashes, at most 64 characters.",
            "text.format.name",
        )
    schema = raw.get("schema")
    if not isinstance(schema, dict):
        raise bad_request(
            "Missing required parameter: 'text.format.schema'.",
            "text.format.schema",
            code="missing_required_parameter",
        )
    if schema.get("type") != "object":
        raise _schema_error(name, (), "schema must be a JSON Schema of 'type: \"object\"'.")
    strict = raw.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise bad_request(
            f"Invalid type for 'text.format.strict': expected a boolean, but got "
            f"{type_name(strict)} instead.",
            "text.format.strict",
        )
    if strict:
        _check_strict(name, schema, ())
    echoed: dict[str, Any] = {
        "type": "json_schema",
        "name": name,
        "schema": schema,
        "strict": bool(strict),
    }
    if isinstance(raw.get("description"), str):  # typed string, not nullable: absent if unset
        echoed["description"] = raw["description"]
    return echoed


def parse_text(raw: Any) -> dict[str, Any]:
    """Check ``text`` and return it as the response echoes it (format and verbosity)."""
    if raw is None:
        return default_text()
    if not isinstance(raw, dict):
        raise bad_request(
            f"Invalid type for 'text': expected an object, but got {type_name(raw)} instead.",
            "text",
        )
    verbosity = raw.get("verbosity") or "medium"
    if verbosity not in VERBOSITIES:
        raise bad_request(f"Invalid value for 'text.verbosity': {verbosity!r}.", "text.verbosity")
    fmt = raw.get("format") or {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") not in FORMATS:
        raise bad_request(
            "Invalid value for 'text.format.type': expected one of 'text', 'json_schema', "
            "'json_object'.",
            "text.format.type",
        )
    kind = fmt["type"]
    return {
        "format": _json_schema_format(fmt) if kind == "json_schema" else {"type": kind},
        "verbosity": verbosity,
    }


def _resolve(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s (``#``, ``#/$defs/X``, ``#/definitions/X``)."""
    for _ in range(32):
        if not isinstance(node, dict) or "$ref" not in node:
            break
        ref = str(node["$ref"])
        target: Any = root
        for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
    return node if isinstance(node, dict) else {}


def _pick(members: list[Any], root: dict[str, Any], deep: bool) -> dict[str, Any]:
    """The member to generate from: a non-null one, or null itself when recursion runs deep."""
    resolved = [_resolve(member, root) for member in members]
    nulls = [m for m in resolved if m.get("type") == "null"]
    others = [m for m in resolved if m.get("type") != "null"]
    if deep and nulls:
        return nulls[0]
    return others[0] if others else (nulls[0] if nulls else {})


def _string(node: dict[str, Any]) -> str:
    text = _STRINGS.get(str(node.get("format")), "simulated")
    minimum = int(node.get("minLength") or 0)
    if len(text) < minimum:
        text = text + "x" * (minimum - len(text))
    maximum = node.get("maxLength")
    return text[: int(maximum)] if isinstance(maximum, int) else text


def _number(node: dict[str, Any], value: float) -> float:
    """``value`` moved inside the node's bounds (inclusive and exclusive ones)."""
    low, high = node.get("minimum"), node.get("maximum")
    xlow, xhigh = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if isinstance(low, int | float) and value < low:
        value = low
    if isinstance(xlow, int | float) and value <= xlow:
        value = xlow + 1
    if isinstance(high, int | float) and value > high:
        value = high
    if isinstance(xhigh, int | float) and value >= xhigh:
        value = xhigh - 1
    return value


def instance(node: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """A JSON value that matches ``node`` (a subschema of ``root``)."""
    node = _resolve(node, root)
    deep = depth >= _MAX_DEPTH
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list) and node[key]:
            return instance(_pick(node[key], root, deep), root, depth + 1)
    if isinstance(node.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
        for member in node["allOf"]:
            part = _resolve(member, root)
            merged.setdefault("properties", {}).update(part.get("properties") or {})
            merged.update({k: v for k, v in part.items() if k != "properties"})
        return instance(merged, root, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = "null" if (deep and "null" in kind) or not kinds else kinds[0]
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    if kind == "object":
        if depth > 4 * _MAX_DEPTH:
            return {}
        properties = node.get("properties") or {}
        return {key: instance(sub, root, depth + 1) for key, sub in properties.items()}
    if kind == "array":
        if isinstance(node.get("prefixItems"), list):
            return [instance(sub, root, depth + 1) for sub in node["prefixItems"]]
        count = 0 if deep else max(1, int(node.get("minItems") or 0))
        return [instance(node.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(_number(node, 1))
    if kind == "number":
        return _number(node, 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(node)


def mismatch(schema: dict[str, Any], document: Any) -> Any:
    """Valid JSON that does not match ``schema``: a required property left out, or (when none
    is required) an array where the object belongs."""
    required = [key for key in schema.get("required") or [] if key in (document or {})]
    if isinstance(document, dict) and required:
        return {key: value for key, value in document.items() if key != required[0]}
    return [document]


def answer_text(fmt: dict[str, Any], prompt: str, sim_output: str | None) -> str | None:
    """The output text a structured format asks for (``None`` for plain text)."""
    if fmt["type"] == "text":
        return None
    if sim_output == "not_json":
        return NOT_JSON
    if fmt["type"] == "json_object":
        document: Any = {"answer": f"Simulated answer to: {prompt}"}
        schema: dict[str, Any] = {"type": "object", "required": ["answer"]}
    else:
        schema = fmt["schema"]
        document = instance(schema, schema)
    if sim_output == "schema_mismatch":
        document = mismatch(_resolve(schema, schema), document)
    return json.dumps(document, ensure_ascii=False)
