"""Webhook endpoints (``/v1/webhook_endpoints``): records, validation and the service logic.

Why the simulator has them: ``manage.py register_webhook`` creates, rotates and tests endpoints
through the SDK's ``client.webhooks.*``, and those calls need a server that answers in the SDK's
shapes (``WebhookEndpoint``, ``WebhookEndpointWithSecret``, ``WebhookEndpointTestResult``,
``DeletedWebhookEndpoint``: the SDK 3.57 types are the reference, the vendored OpenAPI file has no
such paths). A registered endpoint receives the events it subscribed to, signed with its own
secret, next to the ``/_sim/config`` target, which keeps working.

Rotation: the endpoint signs new deliveries with the new secret at once; deliveries already on
their way keep being retried with the secret they were signed with, so a receiver must accept
both for a while (``OPENAI_WEBHOOK_SECRET_FALLBACKS``). The old secret's 24 h window is recorded
(``previous_secret_expires_at``) but nothing is signed with it any more.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import validation
from .errors import bad_request, not_found
from .ids import hex_id
from .state import SimState

#: The event types the SDK 3.57 accepts in ``webhooks.create/update/test``.
EVENT_TYPES = (
    "batch.completed",
    "batch.failed",
    "batch.expired",
    "batch.cancelled",
    "response.completed",
    "response.failed",
    "response.cancelled",
    "response.incomplete",
    "eval.run.succeeded",
    "eval.run.failed",
    "eval.run.canceled",
    "fine_tuning.job.succeeded",
    "fine_tuning.job.failed",
    "fine_tuning.job.cancelled",
    "realtime.call.incoming",
    "video.completed",
    "video.failed",
    "agent.environment.ready",
    "agent.environment.failed",
    "agent.environment.suspended",
    "agent.environment.expired",
    "agent.session.created",
    "agent.session.action_required",
    "agent.session.in_progress",
    "agent.session.idle",
    "agent.session.failed",
    "safety.alert.created",
)

#: Hosts the simulator lets a plain-HTTP endpoint point at (the real API wants HTTPS; tests and
#: the demo receive on loopback).
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

KEEP_OLD_SECRET_S = 24 * 3600

_OBJECT_PREFIX = {"response": "resp", "batch": "batch", "video": "video"}


def new_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes, base64), never derived from the seed."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_hint(secret: str) -> str:
    """The masked hint the API shows instead of the secret."""
    return "whsec_****" + secret[-4:]


@dataclass
class WebhookEndpoint:
    """One registered endpoint and its signing secrets."""

    id: str
    name: str
    url: str
    event_types: list[str]
    secret: str
    created_at: int
    updated_at: int
    previous_secret: str | None = None
    previous_secret_expires_at: int | None = None

    def render(self, *, with_secret: bool = False) -> dict[str, Any]:
        """``WebhookEndpoint`` (or ``WebhookEndpointWithSecret`` after a create or rotation)."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "webhook_endpoint",
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "name": self.name,
            "url": self.url,
            "event_types": list(self.event_types),
            "signing_secret_hint": secret_hint(self.secret),
        }
        if with_secret:
            body["signing_secret"] = self.secret
        return body


def _url(raw: Any) -> str:
    url = validation.required_str({"url": raw}, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request("Invalid 'url': expected an absolute HTTPS URL.", "url")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise bad_request("Invalid 'url': webhook endpoints must use HTTPS.", "url")
    return url


def _event_type(raw: Any, param: str) -> str:
    if not isinstance(raw, str) or raw not in EVENT_TYPES:
        raise bad_request(
            f"Invalid '{param}': {raw!r} is not a supported webhook event type.", param
        )
    return raw


def _event_types(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise bad_request(
            "Invalid 'event_types': expected a non-empty array of event types.", "event_types"
        )
    chosen = [_event_type(value, f"event_types[{i}]") for i, value in enumerate(raw)]
    return list(dict.fromkeys(chosen))


def _name(raw: Any) -> str:
    name = validation.required_str({"name": raw}, "name")
    if len(name) > 256:
        raise bad_request("Invalid 'name': string too long.", "name")
    return name


def create(state: SimState, body: dict[str, Any]) -> WebhookEndpoint:
    """``POST /v1/webhook_endpoints``: every field is checked before anything is stored."""
    name, url = _name(body.get("name")), _url(body.get("url"))
    event_types = _event_types(body.get("event_types"))
    now = int(state.now())
    endpoint = WebhookEndpoint(
        id=hex_id(state.rng, "we"),
        name=name,
        url=url,
        event_types=event_types,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    state.stores.webhook_endpoints[endpoint.id] = endpoint
    return endpoint


def get(state: SimState, endpoint_id: str) -> WebhookEndpoint:
    """Look an endpoint up, or 404 like the API."""
    endpoint = state.stores.webhook_endpoints.get(endpoint_id)
    if endpoint is None:
        raise not_found(f"No webhook endpoint found with id '{endpoint_id}'.")
    return endpoint


def update(state: SimState, endpoint_id: str, body: dict[str, Any]) -> WebhookEndpoint:
    """``POST /v1/webhook_endpoints/{id}``: any of name, url, event_types (all checked first)."""
    endpoint = get(state, endpoint_id)
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _name(body["name"])
    if "url" in body:
        changes["url"] = _url(body["url"])
    if "event_types" in body:
        changes["event_types"] = _event_types(body["event_types"])
    if any(getattr(endpoint, key) != value for key, value in changes.items()):
        for key, value in changes.items():
            setattr(endpoint, key, value)
        endpoint.updated_at = int(state.now())
    return endpoint


def delete(state: SimState, endpoint_id: str) -> dict[str, Any]:
    """``DELETE /v1/webhook_endpoints/{id}``: ``DeletedWebhookEndpoint``."""
    get(state, endpoint_id)
    del state.stores.webhook_endpoints[endpoint_id]
    return {"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True}


def list_page(state: SimState, params: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/webhook_endpoints?after=&limit=``: newest first, a cursor page."""
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise bad_request("Invalid 'limit': expected an integer.", "limit") from None
    if not 1 <= limit <= 100:
        raise bad_request("Invalid 'limit': expected a value between 1 and 100.", "limit")
    newest_first = list(reversed(state.stores.webhook_endpoints.values()))
    after = params.get("after")
    if after:
        ids = [endpoint.id for endpoint in newest_first]
        if after not in ids:
            raise bad_request(f"Invalid 'after': no webhook endpoint '{after}'.", "after")
        newest_first = newest_first[ids.index(after) + 1 :]
    page = newest_first[:limit]
    return {
        "object": "list",
        "data": [endpoint.render() for endpoint in page],
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
        "has_more": len(newest_first) > limit,
    }


def rotate(state: SimState, endpoint_id: str, body: dict[str, Any]) -> WebhookEndpoint:
    """``POST .../rotate_secret``: a new secret, the old one remembered for 24 h if asked."""
    endpoint = get(state, endpoint_id)
    keep = body.get("keep_old_secret_active_for_24_hours", False)
    if not isinstance(keep, bool):
        raise bad_request(
            "Invalid type for 'keep_old_secret_active_for_24_hours': expected a boolean.",
            "keep_old_secret_active_for_24_hours",
        )
    now = int(state.now())
    endpoint.previous_secret = endpoint.secret if keep else None
    endpoint.previous_secret_expires_at = now + KEEP_OLD_SECRET_S if keep else None
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    return endpoint


def sample_event(body: dict[str, Any]) -> tuple[str, bytes]:
    """The event type and JSON body of a sample event for ``POST .../test``."""
    event_type = _event_type(body.get("event_type"), "event_type")
    prefix = _OBJECT_PREFIX.get(event_type.split(".")[0], "obj")
    event = {
        "id": "evt_" + secrets.token_hex(24),
        "object": "event",
        "type": event_type,
        "created_at": int(time.time()),
        "data": {"id": f"{prefix}_" + secrets.token_hex(24)},
    }
    return event_type, json.dumps(event, separators=(",", ":")).encode()
