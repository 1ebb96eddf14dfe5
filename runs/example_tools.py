"""Example tools registered out of the box: for the demo and for trying tool calls."""

from datetime import UTC, datetime


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def utc_now() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat()
