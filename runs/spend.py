"""Placeholder: spend limits (issue 16). ``check`` is the interface ``create_run`` calls."""

from __future__ import annotations

from collections.abc import Mapping


def check(metadata: Mapping[str, str], *, owner: str, model: str) -> None:
    """Raise ``ValidationError`` when a spend limit forbids one more run with ``metadata``."""
