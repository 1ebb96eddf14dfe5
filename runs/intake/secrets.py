"""The webhook signing secrets we accept: the current one and, during a rotation, its fallbacks.

Why fallbacks: ``webhooks.rotate_secret(..., keep_old_secret_active_for_24_hours=True)`` gives a
new secret while deliveries signed with the old one are still on their way (and retried for up to
72 hours). With only one secret configured, whichever secret the web processes do not hold turns
good deliveries into 400s, which OpenAI never retries. So, like Django's ``SECRET_KEY_FALLBACKS``,
``OPENAI_WEBHOOK_SECRET_FALLBACKS`` (comma-separated, or a list in settings) names secrets that
still verify; a delivery is accepted when any configured secret verifies it.

Why a malformed secret is *our* error: OpenAI secrets are ``whsec_`` plus base64. A secret that
is not (a truncated paste, a stray quote) can verify nothing, so every delivery would be refused
as if it were forged. ``problems()`` names what is wrong, by setting name and never by value, for
the view (a 500, so OpenAI retries once it is fixed) and for the system check.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import openai

from ..conf import settings

PREFIX = "whsec_"
CURRENT = "OPENAI_WEBHOOK_SECRET"
FALLBACKS = "OPENAI_WEBHOOK_SECRET_FALLBACKS"


def fallbacks() -> list[str]:
    """The fallback secrets, in order: a comma-separated string or a list/tuple of strings.

    Blank entries are dropped (a trailing comma is harmless); anything that is not a string is
    kept as is, so ``problems()`` reports it instead of it being silently ignored.
    (The environment variable is read when the setting is not set: see ``runs/conf.py``.)
    """
    raw: Any = settings.OPENAI_WEBHOOK_SECRET_FALLBACKS
    if isinstance(raw, str):
        items: list[Any] = raw.split(",")
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:  # None, or a type problems() reports
        return []
    cleaned = [item.strip() if isinstance(item, str) else item for item in items]
    return [item for item in cleaned if item != ""]


def current() -> Any:
    """The secret new deliveries are signed with ("" when none is configured).

    Surrounding whitespace (a newline from an env file) is dropped, as for the fallbacks. A value
    that is not a string is returned as is, for ``problems()`` to report.
    """
    value: Any = settings.OPENAI_WEBHOOK_SECRET or ""
    return value.strip() if isinstance(value, str) else value


def configured() -> list[Any]:
    """Every secret a delivery may be signed with: the current one first, then the fallbacks."""
    return [secret for secret in (current(), *fallbacks()) if secret]


def problem(secret: object) -> str | None:
    """What is wrong with one secret, in words that never include it; None if well formed."""
    if not isinstance(secret, str):
        return f"is a {type(secret).__name__}, not a string"
    if not secret.startswith(PREFIX):
        return f"does not start with {PREFIX!r} (copy the whole secret OpenAI showed)"
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return f"is not valid base64 after {PREFIX!r} (truncated or mangled?)"
    if not key:
        return f"has nothing after {PREFIX!r}"
    return None


def problems() -> list[str]:
    """Every malformed configured secret, named by its setting (and position among fallbacks)."""
    found: list[str] = []
    secret = current()
    if secret and (issue := problem(secret)):
        found.append(f"{CURRENT} {issue}")
    for index, fallback in enumerate(fallbacks()):
        if issue := problem(fallback):
            found.append(f"{FALLBACKS}[{index}] {issue}")
    raw = settings.OPENAI_WEBHOOK_SECRET_FALLBACKS
    if raw and not isinstance(raw, str | list | tuple):
        found.append(f"{FALLBACKS} must be a comma-separated string or a list of strings")
    return found


def verify(
    client: openai.OpenAI, payload: bytes, headers: Mapping[str, str], secrets: list[Any]
) -> None:
    """Accept ``payload`` if any of ``secrets`` signed it, with the SDK's own check per secret.

    The SDK compares in constant time and also enforces its 5-minute timestamp tolerance. Raises
    ``openai.InvalidWebhookSignatureError`` when no secret verifies (the last secret's reason: a
    stale timestamp fails the same way for all of them), ``ValueError`` for a missing header or a
    body that is not UTF-8.
    """
    if not secrets:
        raise ValueError("no webhook secret to verify with")
    if not headers.get("webhook-signature", "").isascii():
        # The SDK compares signatures as strings, and ``hmac.compare_digest`` raises TypeError on
        # a non-ASCII one: a forged header would be a 500. No valid signature is other than ASCII.
        raise openai.InvalidWebhookSignatureError("the webhook-signature header is not ASCII")
    failure: openai.InvalidWebhookSignatureError | None = None
    for secret in secrets:
        try:
            client.webhooks.verify_signature(payload, headers, secret=secret)
        except openai.InvalidWebhookSignatureError as exc:
            failure = exc
            continue
        return
    assert failure is not None
    raise failure
