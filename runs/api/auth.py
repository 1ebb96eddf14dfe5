"""Token auth for the JSON API: bearer tokens from the ``RUNS_API_TOKENS`` setting.

Settings-based on purpose: no model, no migration, rotation is an environment change (list the
new token next to the old one, deploy, drop the old). Tokens name a *client*, not a user; the
admin is where people with accounts act.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest
from ninja.security import HttpBearer

from ..conf import settings


def token_is_valid(token: str) -> bool:
    """Whether ``token`` is one of ``RUNS_API_TOKENS`` (constant-time per comparison)."""
    candidate = token.encode()
    found = False
    for known in settings.RUNS_API_TOKENS:
        # No early exit: the time taken does not tell which token (or how much of it) matched.
        found |= hmac.compare_digest(candidate, known.encode())
    return bool(token) and found


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> str | None:
        return token if token_is_valid(token) else None
