"""The registry of Python functions the model may call ("function tools").

    from runs.tools import tool

    @tool                                  # schema from the hints, description from the docstring
    def add(a: int, b: int) -> int:
        return a + b

    @tool(manual=True)                     # never executed: a person answers through the API
    def approve_refund(order_id: str, amount: float) -> str: ...

    @tool                                  # call_id is filled in by the worker, not the model
    def send_invoice(order_id: str, call_id: ToolCallId) -> str: ...

Registering is process-wide and must happen at import time of a module every process loads (the
web process validates ``create_run(tools=...)`` against it, the worker executes from it): an
``AppConfig.ready()`` import is the usual place. A run carries tool *names* (``Run.tools``); the
JSON schema is derived here from the type hints (or given explicitly) and sent with each request,
so changing a tool's signature takes effect on the next request, not the next run.

Before a call, the model's arguments are validated against the same type hints (``tool_args``);
a parameter annotated ``ToolCallId`` is left out of the schema and receives the call id, which a
tool that writes anything keys its side effects on (a call may run twice: docs/tools.md).

This module only describes tools; ``tool_runner`` executes them and ``engine.tool_round`` drives
a run's ``requires_action`` rounds.
"""

from __future__ import annotations

import enum
import inspect
import logging
import re
import threading
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, TypeVar, Union, overload

from django.core.exceptions import ValidationError

from .tool_args import ArgumentsAdapter, ToolCallId, build_adapter, call_id_parameter

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: OpenAI's rule for function names.
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

_SIMPLE_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    tuple: "array",
    set: "array",
    frozenset: "array",
}


@dataclass(frozen=True)
class Tool:
    """A registered function tool."""

    name: str
    description: str
    #: JSON schema of the arguments object.
    parameters: dict[str, Any]
    #: None for a manual tool: its output comes from a person through the Python API.
    func: Callable[..., Any] | None = field(default=None, compare=False)
    manual: bool = False
    #: Seconds the worker waits for one call; None means ``settings.RUNS_TOOL_TIMEOUT_S``.
    timeout_s: float | None = None
    #: The parameter annotated ``ToolCallId``: not in the schema, given the call id.
    call_id_param: str | None = None

    @cached_property
    def arguments_adapter(self) -> ArgumentsAdapter:
        """Validates the model's arguments against the hints (built on first use, then kept)."""
        assert self.func is not None, "a manual tool without a function is never executed"
        return build_adapter(self.func, skip=self.call_id_param)

    def responses_spec(self) -> dict[str, Any]:
        """The Responses API shape (flat). Not strict: derived schemas may not meet its rules."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "strict": False,
        }

    def assistants_spec(self) -> dict[str, Any]:
        """The Assistants API shape (nested under ``function``)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
                "strict": False,
            },
        }


_registry: dict[str, Tool] = {}
_lock = threading.Lock()
#: The call id of the tool call running in this thread (set by ``tool_runner``).
_CALL_ID: ContextVar[str] = ContextVar("runs_tool_call_id", default="")


def current_call_id() -> str:
    """Inside a tool: the id OpenAI gave this call ("" outside a call).

    A tool runs again only when the worker running it died mid-call, and then with the same call
    id: key side effects on it (an idempotency key, a unique row) to make the repeat harmless.
    A ``ToolCallId`` parameter gives the same id explicitly, which is easier to test.
    """
    return _CALL_ID.get()


# --- schemas from type hints ---------------------------------------------------------------------


def json_schema_for(annotation: Any) -> dict[str, Any]:
    """The JSON schema of one parameter's annotation; TypeError when there is no faithful one."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation in _SIMPLE_TYPES:
        return {"type": _SIMPLE_TYPES[annotation]}
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [json_schema_for(a) for a in args if a is not type(None)]
        if type(None) in args:
            options.append({"type": "null"})
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin in (list, tuple, set, frozenset, Sequence, Iterable):
        schema: dict[str, Any] = {"type": "array"}
        if args and args[0] is not Ellipsis:
            schema["items"] = json_schema_for(args[0])
        return schema
    if origin in (dict, Mapping):
        return {"type": "object"}
    raise TypeError(f"no JSON schema for {annotation!r}")


def schema_from_signature(func: Callable[..., Any]) -> dict[str, Any]:
    """An ``object`` schema: one property per parameter, required unless it has a default.

    The ``ToolCallId`` parameter is not one the model fills in, so it is not in the schema.
    """
    hints = typing.get_type_hints(func)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(func).parameters.items():
        if hints.get(name) is ToolCallId:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"{func.__qualname__}: parameter {name!r} cannot be passed by name from JSON; "
                "use plain named parameters"
            )
        try:
            properties[name] = json_schema_for(hints.get(name, param.annotation))
        except TypeError as exc:
            raise TypeError(
                f"{func.__qualname__}: parameter {name!r}: {exc}; pass parameters= explicitly"
            ) from None
        if param.default is param.empty:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _description(func: Callable[..., Any] | None) -> str:
    """The first paragraph of the docstring: what the model reads to decide to call the tool."""
    doc = inspect.getdoc(func) if func is not None else None
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip() if doc else ""


# --- registering ---------------------------------------------------------------------------------


def register(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    manual: bool = False,
    timeout_s: float | None = None,
    replace: bool = False,
) -> Tool:
    """Register ``func`` (or, for a manual tool, just a name and schema) and return the Tool.

    Registering the same function again is a no-op (a module imported twice); a different
    function under a taken name is an error unless ``replace=True``.
    """
    if func is None and not manual:
        raise TypeError("only a manual tool may be registered without a function")
    name = name or (func.__name__ if func is not None else "")
    if not NAME_RE.match(name):
        raise ValueError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-'")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"tool {name!r}: timeout_s must be positive")
    if parameters is None:
        parameters = (
            schema_from_signature(func)
            if func is not None
            else {"type": "object", "properties": {}, "required": []}
        )
    new = Tool(
        name=name,
        description=_description(func) if description is None else description,
        parameters=parameters,
        func=func,
        manual=manual,
        timeout_s=timeout_s,
        call_id_param=call_id_parameter(func) if func is not None else None,
    )
    with _lock:
        old = _registry.get(name)
        if old is not None and not replace and (old.func is not func or old != new):
            raise ValueError(f"a different tool is already registered as {name!r}")
        _registry[name] = new
    return new


@overload
def tool(func: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    manual: bool = False,
    timeout_s: float | None = None,
) -> Callable[[F], F]: ...
def tool(func: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
    """Decorator form of ``register``; the function is returned unchanged (still callable)."""

    def decorate(f: F) -> F:
        register(f, **options)
        return f

    return decorate(func) if func is not None else decorate


def unregister(name: str) -> None:
    """Forget a tool (tests; a plugin being unloaded). Unknown names are ignored."""
    with _lock:
        _registry.pop(name, None)


def get_tool(name: str) -> Tool | None:
    return _registry.get(name)


def registered() -> list[str]:
    """Registered tool names, sorted."""
    return sorted(_registry)


# --- what create_run and the backends ask ---------------------------------------------------------


def clean_tool_names(names: Any) -> list[str]:
    """``create_run(tools=...)`` input: a list of registered names, duplicates dropped.

    Raises ``ValidationError`` naming the unknown tool and what is registered.
    """
    if names is None:
        return []
    if isinstance(names, str) or not isinstance(names, list | tuple):
        raise ValidationError("tools must be a list of registered tool names")
    clean: list[str] = []
    for name in names:
        if not isinstance(name, str) or name not in _registry:
            known = ", ".join(registered()) or "none"
            raise ValidationError(f"unknown tool {name!r}; registered tools: {known}")
        if name not in clean:
            clean.append(name)
    return clean


def tools_for(names: Iterable[str]) -> list[Tool]:
    """The registered tools among ``names``, in order.

    A name that is not registered in *this* process (a worker deployed without the module that
    registers it) is left out with a warning rather than failing the run: should the model call it
    anyway, the call gets an "unknown tool" error output like any other unknown name.
    """
    found = []
    for name in names:
        registered_tool = _registry.get(name)
        if registered_tool is None:
            log.warning("tool %r is not registered in this process; not sent", name)
        else:
            found.append(registered_tool)
    return found
