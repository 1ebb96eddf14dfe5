"""Example tools for the demo, the chaos run and for trying tool calls.

``RunsDevConfig.ready()`` imports this module, which registers both in every process of a host
that installs ``runs_dev`` (web and worker). The runtime app ``runs`` registers no tool of its
own. Try them: ``manage.py startrun "What is 2 + 3?" --tool add --wait``.
"""

from datetime import UTC, datetime

from runs.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def utc_now() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat()
