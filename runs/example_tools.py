"""Example tools registered out of the box: for the demo and for trying tool calls.

``RunsConfig.ready()`` imports this module, which registers both in every process (web and
worker). Try them: ``manage.py startrun "What is 2 + 3?" --tool add --wait``.
"""

from datetime import UTC, datetime

from .tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def utc_now() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat()
