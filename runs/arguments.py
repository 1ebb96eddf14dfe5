"""The checks of what the services are given (``runs.services``): each returns the value to store
or raises ``ValidationError`` with a message, before anything is written.

Why apart from the services: the same checks guard every way in (the Python API, the JSON API's
schemas take the limits from here, the management commands through the services, the run
options' text through ``check_text``), and the services module is about what happens to a run,
not what a string may hold. It sits low in the layers so that ``runs.options`` and
``runs.response_formats`` can use it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from . import storable
from .status import Backend, Strategy

MAX_METADATA_KEYS = 15  # OpenAI allows 16; we add our own run_id.
MAX_OWNER_LENGTH = 128


def check_text(value: Any, what: str) -> str:
    """``value`` if it is text PostgreSQL can store (``runs.storable``): checked on every
    database, since SQLite would store what PostgreSQL refuses."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text, not {type(value).__name__}")
    if problem := storable.text_problem(value):
        raise ValidationError(f"{what}: {problem}")
    return value


def check_owner(owner: str) -> str:
    if not isinstance(owner, str) or len(owner) > MAX_OWNER_LENGTH:
        raise ValidationError(f"owner must be a string of at most {MAX_OWNER_LENGTH} characters")
    return check_text(owner, "owner")


def check_choice(value: str, choices: type[Backend] | type[Strategy], what: str) -> str:
    if value not in choices.values:
        raise ValidationError(
            f"unknown {what} {value!r}; expected one of: {', '.join(choices.values)}"
        )
    return value


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError("metadata must be a mapping of strings to strings")
    if len(metadata) > MAX_METADATA_KEYS:
        raise ValidationError(f"metadata has {len(metadata)} keys; at most {MAX_METADATA_KEYS}")
    clean: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise ValidationError(f"metadata key {key!r} must be a string of 1-64 characters")
        if not isinstance(value, str | int | float | bool) or len(str(value)) > 512:
            raise ValidationError(f"metadata value for {key!r} must be a string up to 512 chars")
        clean[check_text(key, "metadata key")] = check_text(str(value), f"metadata {key!r}")
    return clean
