"""Token auth for the JSON API: a bearer token names an API client (``tokens.py``).

Two guards, one per kind of operation: ``READ_AUTH`` lets any valid token in, ``OPERATE_AUTH``
only tokens with the ``operate`` scope (a ``read`` token gets a 403 that says why, before the
operation looks at anything). Either way ``request.auth`` is the ``ApiClient``.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja.errors import AuthorizationError
from ninja.security import HttpBearer

from .tokens import OPERATE, ApiClient, client_for_token


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class BearerToken(HttpBearer):
    """A valid token (else 401) whose client has ``scope`` (else 403)."""

    def __init__(self, scope: str | None = None) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> ApiClient | None:
        """ninja's, without its log line: under ``DEBUG`` it logged a header of another scheme
        whole (``Unexpected auth - 'Token <the secret>'``)."""
        token = bearer_token(request)
        return None if token is None else self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> ApiClient | None:
        client = client_for_token(token)
        if client is not None and self.scope == OPERATE and not client.can_operate:
            raise AuthorizationError(
                message=f"this token's client ({client.name}) may only read: its scope is "
                f"{client.scope!r}, this operation needs {OPERATE!r}"
            )
        return client


READ_AUTH = BearerToken()
OPERATE_AUTH = BearerToken(OPERATE)


def client_of(request: HttpRequest) -> ApiClient:
    """The client the request was authenticated as (every operation has an auth guard)."""
    client = request.auth  # type: ignore[attr-defined]
    assert isinstance(client, ApiClient)
    return client
