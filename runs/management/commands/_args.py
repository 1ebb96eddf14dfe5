"""Argument helpers shared by the management commands: bad input is exit code 2."""

from __future__ import annotations

from django.core.management.base import CommandError

BAD_ARGUMENTS = 2


def bad(message: str) -> CommandError:
    """A CommandError that exits with 2, the conventional code for bad arguments."""
    return CommandError(message, returncode=BAD_ARGUMENTS)


def parse_metadata(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` to a dict; anything else is a clear error."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise bad(f"--metadata expects key=value, got {pair!r}")
        metadata[key.strip()] = value
    return metadata
