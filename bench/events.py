"""Signed webhook deliveries to load the intake with, as the simulator (and OpenAI) sends them."""

from __future__ import annotations

import json
import time

from runs_simulator.signing import sign


def delivery(secret: str, webhook_id: str, response_id: str) -> tuple[bytes, dict[str, str]]:
    """One ``response.completed`` event for ``response_id``: (body, headers)."""
    body = json.dumps(
        {
            "id": f"evt_{webhook_id}",
            "object": "event",
            "type": "response.completed",
            "created_at": int(time.time()),
            "data": {"id": response_id},
        },
        separators=(",", ":"),
    ).encode()
    headers = sign(body, secret, webhook_id, int(time.time()))
    headers["content-type"] = "application/json"
    return body, headers
