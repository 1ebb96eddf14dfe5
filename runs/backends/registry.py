"""The backends by name: the one place that knows every API module.

Adding an API is one module implementing ``base.Backend`` and one line in ``BACKENDS`` (plus the
name in ``status.Backend``, the choice stored on rows, with its migration).
"""

from __future__ import annotations

from .assistants import AssistantsBackend
from .base import Backend
from .responses import ResponsesBackend

BACKENDS: dict[str, Backend] = {
    ResponsesBackend.name: ResponsesBackend(),
    AssistantsBackend.name: AssistantsBackend(),
}


def get_backend(name: str) -> Backend:
    """The backend for ``name``; an unknown name is a configuration error, said clearly."""
    try:
        return BACKENDS[name]
    except KeyError:
        known = ", ".join(repr(n) for n in BACKENDS)
        raise ValueError(f"unknown runs backend {name!r} (expected one of {known})") from None
