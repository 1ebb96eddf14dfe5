"""Checking the arguments a model chose against the tool's signature, before the call.

Why: the model is told a JSON schema (``tools.schema_from_signature``) but nothing makes it keep
to it; ``add(a: int, b: int)`` called with ``{"a": "not-", "b": "an-int"}`` would return
``"not-an-int"`` as a success. Every call's arguments are therefore validated first, and a call
that does not fit becomes an error output the model can act on; the function is never called.

Why pydantic, not a JSON-schema validator: the schema is *derived from* the type hints, so the
hints are the source of truth, and pydantic (already installed: the ``openai`` SDK and
django-ninja are built on it) validates against them directly, with no new runtime dependency. It
runs in strict JSON mode, which accepts what the derived schema accepts: ``"3"`` is not an
``integer``, ``1`` is not a ``boolean``, ``2`` is a ``number``; and the function receives values
of its declared types (an ``Enum`` member, a ``tuple``, a ``float`` for ``2``). Arguments the
signature does not name are refused. For a tool registered with explicit ``parameters=``, the
hints are still what is checked; a hint pydantic cannot validate is accepted as it comes.

``ToolCallId`` is the one hint that is not an argument: see ``runs.tools``.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, NewType, NotRequired, Required

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from typing_extensions import TypedDict  # pydantic needs this one below Python 3.12

#: Annotate a tool parameter with it to receive the call id; the model never sees it.
ToolCallId = NewType("ToolCallId", str)

ArgumentsAdapter = TypeAdapter[dict[str, Any]]


def call_id_parameter(func: Callable[..., Any]) -> str | None:
    """The name of ``func``'s parameter annotated ``ToolCallId``, if it has one."""
    hints = typing.get_type_hints(func)
    names = [name for name, hint in hints.items() if hint is ToolCallId and name != "return"]
    if len(names) > 1:
        raise TypeError(f"{func.__qualname__}: only one parameter may be a ToolCallId")
    return names[0] if names else None


def _for_validation(annotation: Any) -> Any:
    """The annotation pydantic should check: ``Iterable[X]`` as ``list[X]`` (pydantic would
    validate an iterable lazily, inside the tool), nothing for a missing hint."""
    if annotation is inspect.Parameter.empty:
        return Any
    if typing.get_origin(annotation) is collections.abc.Iterable:
        return list[_item(annotation)]
    return annotation


def _item(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else Any


def _fields(func: Callable[..., Any], skip: str | None, lenient: bool) -> dict[str, Any]:
    hints = typing.get_type_hints(func)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(func).parameters.items():
        if name == skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = _for_validation(hints.get(name, param.annotation))
        if lenient:
            try:
                TypeAdapter(annotation)
            except (PydanticSchemaGenerationError, PydanticUserError):
                annotation = Any
        wrapper = Required if param.default is param.empty else NotRequired
        fields[name] = wrapper[annotation]
    return fields


def build_adapter(func: Callable[..., Any], skip: str | None = None) -> ArgumentsAdapter:
    """A validator of the JSON arguments object for ``func`` (``skip``: the call-id parameter)."""
    params = inspect.signature(func).parameters.values()
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    config = ConfigDict(strict=True, extra="allow" if takes_any else "forbid")
    try:
        return _adapter(func.__name__, _fields(func, skip, lenient=False), config)
    except (PydanticSchemaGenerationError, PydanticUserError):
        # A hint pydantic cannot check (possible only with explicit ``parameters=``).
        return _adapter(func.__name__, _fields(func, skip, lenient=True), config)


def _adapter(name: str, fields: dict[str, Any], config: ConfigDict) -> ArgumentsAdapter:
    shape: Any = TypedDict(f"{name}_arguments", fields)
    shape.__pydantic_config__ = config
    return TypeAdapter(shape)


def describe(error: ValidationError) -> str:
    """``b: Input should be a valid integer; c: Extra inputs are not permitted``: where and what,
    never the value (the model sent it; the operator has it in ``ToolCall.arguments``)."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def validate(adapter: ArgumentsAdapter, arguments: str) -> Mapping[str, Any] | str:
    """The keyword arguments, of the declared types, or why there are none (a message).

    Only the arguments the model gave are returned: the function's own defaults apply to the
    rest. ``arguments`` must already be known to be a JSON object.
    """
    try:
        return adapter.validate_json(arguments or "{}")
    except ValidationError as exc:
        return describe(exc)
