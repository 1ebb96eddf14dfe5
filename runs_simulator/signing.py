"""Standard Webhooks signing, as OpenAI signs its webhook deliveries.

Why a separate module: both the simulator (to send events) and our own tests (to forge
events for the app's webhook endpoint) need byte-identical signatures that the SDK's
``client.webhooks.unwrap`` accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def secret_bytes(secret: str) -> bytes:
    """Decode a ``whsec_``-prefixed secret from base64; use any other secret as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def signature(payload: bytes, secret: str, msg_id: str, timestamp: int) -> str:
    """Base64 HMAC-SHA256 of ``"{msg_id}.{timestamp}.{payload}"``."""
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign(payload: bytes, secret: str, msg_id: str, timestamp: int) -> dict[str, str]:
    """Return the three ``webhook-*`` headers for one delivery of ``payload``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + signature(payload, secret, msg_id, timestamp),
    }
