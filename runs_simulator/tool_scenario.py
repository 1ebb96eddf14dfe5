"""The tool-calling scenario knobs shared by Responses and Assistants runs.

Why: our app must run the client side of a tool loop (model asks for a function call,
app runs it and sends the output back) for a chosen number of rounds, including the case
where the model sends arguments that are not valid JSON. Both APIs read the same
``sim_tool_*`` metadata so one test vocabulary covers both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .timeline import meta_int

BAD_ARGUMENTS = '{"query": "unterminated'


@dataclass(frozen=True)
class ToolPlan:
    """How many tool rounds to ask for, and what each call looks like."""

    rounds: int
    name: str
    arguments: str


def first_tool_name(tools: list[Any]) -> str | None:
    """Name of the first function tool (Responses flat shape or Assistants nested shape)."""
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue
        if isinstance(tool.get("name"), str):
            return str(tool["name"])
        function = tool.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


def tool_plan(metadata: Mapping[str, str], tools: list[Any]) -> ToolPlan | None:
    """The plan when ``sim_tool_rounds`` > 0 and a tool name is known, else ``None``."""
    rounds = meta_int(metadata, "sim_tool_rounds", 0)
    if rounds <= 0:
        return None
    name = metadata.get("sim_tool_name") or first_tool_name(tools)
    if not name:
        return None
    if metadata.get("sim_bad_args") in ("1", "true", "True"):
        arguments = BAD_ARGUMENTS
    else:
        arguments = metadata.get("sim_tool_args") or "{}"
    return ToolPlan(rounds=rounds, name=name, arguments=arguments)


def sim_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Only the ``sim_*`` keys (what follow-ups inherit)."""
    return {key: value for key, value in metadata.items() if key.startswith("sim_")}
