"""Requests to the JSON API as one client: the tests of owners, scopes, batches and costs."""

from __future__ import annotations

from typing import Any


class As:
    """Requests to ``/api`` with one client's bearer token; each returns the response."""

    def __init__(self, client: Any, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: object) -> Any:
        return self.client.get(f"/api{path}", params, headers=self.headers)

    def post(self, path: str, json: object = None) -> Any:
        return self.client.post(
            f"/api{path}", json or {}, content_type="application/json", headers=self.headers
        )
