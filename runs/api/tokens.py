"""API clients and their tokens, read from the ``RUNS_API_TOKENS`` setting.

Settings-based on purpose: no model, no migration, rotation is an environment change (list the
new token next to the old one under the same client name, deploy, drop the old). A token names a
*client*; the client owns the runs and threads it creates (``client:<name>``), so every token of
one client sees the same rows and shares one throttle.

Each entry of the setting is one of:

- ``"SECRET"`` (the plain form of earlier versions): client ``default``, scope ``operate``;
- ``"name:scope:SECRET"`` (the compact form, for the environment:
  ``RUNS_API_TOKENS=acme:operate:tok_1,audit:read:tok_2``). Everything after the second colon
  is the secret, so a secret may hold colons;
- a mapping (in Python settings), which alone can carry allow-lists::

      {"client": "acme", "scope": "operate", "token": "...",
       "models": ["gpt-4.1-mini"], "tools": ["add"]}

A string setting is split on commas. A malformed entry raises ``ImproperlyConfigured`` naming
its position, never its secret.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..conf import settings

READ, OPERATE = "read", "operate"
SCOPES = (READ, OPERATE)
#: The client name plain tokens get: they all saw everything before owners existed.
DEFAULT_CLIENT = "default"
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ApiClient:
    """Who a valid token speaks for, and what it may do. ``str()`` is the client's owner key."""

    name: str
    scope: str
    token: str = field(repr=False)  # never in a repr, a log line or an error message
    models: frozenset[str] | None = None  # None: any model
    tools: frozenset[str] | None = None  # None: any registered tool

    @property
    def owner(self) -> str:
        return f"client:{self.name}"

    @property
    def can_operate(self) -> bool:
        return self.scope == OPERATE

    def __str__(self) -> str:
        # ninja's throttles key on str(request.auth): one bucket per client, not per token.
        return self.owner


def _allow_list(value: Any, what: str, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ImproperlyConfigured(f"{where}: {what} must be a list of names")
    names = frozenset(value)
    if not all(isinstance(name, str) and name for name in names):
        raise ImproperlyConfigured(f"{where}: {what} must be a list of non-empty names")
    return names


def _client(name: Any, scope: Any, token: Any, where: str, **allow: Any) -> ApiClient:
    if not isinstance(name, str) or not CLIENT_NAME.match(name):
        raise ImproperlyConfigured(f"{where}: the client name must be 1-64 of A-Z a-z 0-9 _ . -")
    if scope not in SCOPES:
        raise ImproperlyConfigured(f"{where}: the scope must be one of {', '.join(SCOPES)}")
    if not isinstance(token, str) or not token.strip():
        raise ImproperlyConfigured(f"{where}: the token is empty")
    lists = {what: _allow_list(allow.get(what), what, where) for what in ("models", "tools")}
    return ApiClient(name=name, scope=scope, token=token.strip(), **lists)


def parse_entry(entry: str | Mapping[str, Any], position: int) -> ApiClient:
    """One entry of ``RUNS_API_TOKENS`` (see the module's docstring for the forms)."""
    where = f"RUNS_API_TOKENS entry {position}"
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"client", "scope", "token", "models", "tools"}
        if unknown:
            raise ImproperlyConfigured(f"{where}: unknown keys {sorted(unknown)}")
        return _client(
            entry.get("client", DEFAULT_CLIENT),
            entry.get("scope", OPERATE),
            entry.get("token"),
            where,
            models=entry.get("models"),
            tools=entry.get("tools"),
        )
    if not isinstance(entry, str):
        raise ImproperlyConfigured(f"{where}: expected a string or a mapping")
    parts = entry.strip().split(":", 2)
    if len(parts) == 1:
        return _client(DEFAULT_CLIENT, OPERATE, parts[0], where)
    if len(parts) == 2:
        raise ImproperlyConfigured(f"{where}: expected SECRET or name:scope:SECRET")
    return _client(parts[0], parts[1], parts[2], where)


def configured_clients() -> list[ApiClient]:
    """Every entry of ``RUNS_API_TOKENS``, parsed (live: ``override_settings`` works)."""
    value = settings.RUNS_API_TOKENS
    if isinstance(value, str):
        value = [item for item in value.split(",") if item.strip()]
    return [parse_entry(entry, position) for position, entry in enumerate(value, start=1)]


def client_for_token(token: str) -> ApiClient | None:
    """The client ``token`` belongs to, if any. Compares with every configured token in constant
    time and without an early exit, so the time taken does not tell which one (or how much of
    it) matched."""
    candidate = token.encode()
    found: ApiClient | None = None
    for client in configured_clients():
        if hmac.compare_digest(candidate, client.token.encode()) and found is None:
            found = client
    return found if token else None
