"""Request-body checks worded like the API's own 400 answers.

Why: the real API rejects, e.g., non-string metadata values; if the simulator accepted
them, our app could ship a bug that only production would reveal.
"""

from __future__ import annotations

from typing import Any

from .errors import bad_request

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def type_name(value: Any) -> str:
    """How the API names a JSON value's type in its 400 messages ("an integer", "null"...)."""
    return _TYPE_NAMES.get(type(value), "a string" if isinstance(value, str) else "a value")


_type_name = type_name


def metadata(raw: Any, param: str = "metadata") -> dict[str, str]:
    """Validate ``metadata``: an object of at most 16 string values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request(
            f"Invalid type for '{param}': expected an object, but got {_type_name(raw)} instead.",
            param,
        )
    if len(raw) > 16:
        raise bad_request(
            f"Invalid '{param}': too many properties. Expected an object with "
            f"at most 16 properties, but got an object with {len(raw)} properties "
            "instead.",
            param,
        )
    for key, value in raw.items():
        if not isinstance(value, str):
            raise bad_request(
                f"Invalid type for '{param}.{key}': expected a string, but got "
                f"{_type_name(value)} instead.",
                f"{param}.{key}",
            )
        if len(key) > 64 or len(value) > 512:
            raise bad_request(f"Invalid '{param}.{key}': string too long.", f"{param}.{key}")
    return dict(raw)


def required_str(body: dict[str, Any], key: str) -> str:
    """A required, non-empty string parameter."""
    value = body.get(key)
    if value is None or value == "":
        raise bad_request(f"Missing required parameter: '{key}'.", key)
    if not isinstance(value, str):
        raise bad_request(
            f"Invalid type for '{key}': expected a string, but got {_type_name(value)} instead.",
            key,
        )
    return value


def object_body(raw: Any) -> dict[str, Any]:
    """The request body must be a JSON object."""
    if not isinstance(raw, dict):
        raise bad_request("Invalid body: expected a JSON object.")
    return raw
