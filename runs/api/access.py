"""What one API client may see and ask for: its own rows, and its allow-lists.

Every operation looks rows up through ``owned_runs``/``owned_threads``, so another client's id is
the same 404 as an id that does not exist (whether it exists is not the asker's business), and
nothing is written. Rows without an owner (created before owners existed, or by code that gave
none) belong to no client.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja.errors import AuthorizationError

from ..conf import settings
from ..models import Run, Thread
from .auth import client_of


def owned_runs(request: HttpRequest) -> QuerySet[Run]:
    return Run.objects.filter(owner=client_of(request).owner)


def owned_threads(request: HttpRequest) -> QuerySet[Thread]:
    return Thread.objects.filter(owner=client_of(request).owner)


def check_allowed(request: HttpRequest, *, model: str | None, tools: Iterable[str]) -> None:
    """403 (nothing written) when the client's allow-lists do not cover the model (the default
    model when none is given) or one of the tools."""
    client = client_of(request)
    model = model or settings.RUNS_DEFAULT_MODEL
    if client.models is not None and model not in client.models:
        allowed = ", ".join(sorted(client.models)) or "none"
        raise AuthorizationError(
            message=f"client {client.name} may not use model {model!r}; allowed: {allowed}"
        )
    if client.tools is not None:
        refused = sorted(set(tools) - client.tools)
        if refused:
            allowed = ", ".join(sorted(client.tools)) or "none"
            raise AuthorizationError(
                message=f"client {client.name} may not use tools {refused}; allowed: {allowed}"
            )
