"""The backends by name: the one place that knows every API module.

Adding an API is one module implementing ``base.Backend`` and one line in ``BACKENDS`` (plus the
name in ``status.Backend``, the choice stored on rows, with its migration).
"""

from __future__ import annotations

import logging
from typing import Any

from ..redact import redact
from .assistants import AssistantsBackend
from .base import Backend
from .responses import ResponsesBackend

log = logging.getLogger(__name__)

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


def warm_all(sender: Any = None, **kwargs: Any) -> None:
    """Celery ``worker_init`` receiver: warm every backend (``Backend.warm``) before the worker
    takes a task. Under prefork it runs in the parent, so every child starts warm. A backend that
    cannot be warmed is only slower at its first call: said, never fatal."""
    for backend in BACKENDS.values():
        try:
            backend.warm()
        except Exception as exc:  # noqa: BLE001 - a cold start is not worth a failed worker
            log.warning("could not warm the %s backend: %s", backend.name, redact(repr(exc)))
