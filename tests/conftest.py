"""Shared fixtures: a private Redis, the simulator over HTTP, a real Celery worker thread.

Integration tests use all three for real: the worker is Celery's own embedded worker (a thread in
this process, never eager mode), tasks travel through Redis, and the backend talks HTTP to the
simulator through the real ``openai`` SDK.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.db import connection

from project.celery import app as celery_app
from project.localredis import RedisUnavailable, start_private_redis
from runs.client import get_client
from runs.models import Run
from runs.status import TERMINAL

if TYPE_CHECKING:
    from simulator.testing import RunningSimulator


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server on a free port: tests may flush it; the shared one is never used."""
    try:
        server = start_private_redis()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    """The local OpenAI-compatible server, started as a subprocess on a free port."""
    from simulator.testing import RunningSimulator

    with RunningSimulator() as sim:
        yield sim


@pytest.fixture(scope="session")
def celery_worker(
    redis_url: str, simulator: RunningSimulator, django_db_setup: None, django_db_blocker
) -> Iterator[object]:
    """A real Celery worker (threads pool) consuming from the private Redis."""
    from celery.contrib.testing.worker import start_worker

    celery_app.conf.update(broker_url=redis_url, broker_connection_retry_on_startup=True)
    settings.OPENAI_BASE_URL = simulator.base_url
    get_client.cache_clear()
    with (
        django_db_blocker.unblock(),
        start_worker(
            celery_app,
            pool="threads",
            concurrency=4,
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ) as worker,
    ):
        yield worker


@pytest.fixture
def worker(celery_worker: object, transactional_db: None) -> object:
    """For a test: the running worker plus a database whose commits the worker can see."""
    return celery_worker


@pytest.fixture
def wait_terminal() -> Callable[..., Run]:
    """Wait (in the test, not in a task) until a run is terminal; fail with its story if not."""

    def wait(run_id: int, timeout: float = 60.0) -> Run:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = Run.objects.get(pk=run_id)
            if run.status in TERMINAL:
                return run
            time.sleep(0.05)
        events = list(Run.objects.get(pk=run_id).events.values_list("to_status", "source"))
        pytest.fail(f"run {run_id} not terminal after {timeout} s: {run.status}, events {events}")

    return wait


@pytest.fixture
def on_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set TEST_DATABASE_URL or start a local server)")


# --- webhooks ------------------------------------------------------------------------------------

WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy1vbmx5LTAxMjM0NTY3ODk="


@pytest.fixture
def webhook_secret(settings) -> str:
    """The secret our endpoint verifies with (a test-only value, set for this test)."""
    settings.OPENAI_WEBHOOK_SECRET = WEBHOOK_SECRET
    return WEBHOOK_SECRET


@pytest.fixture
def signed():
    """Build a signed delivery: ``signed(payload_or_bytes, secret=..., msg_id=..., ts=...)``."""
    import json
    import uuid

    from simulator.signing import sign

    def build(
        payload: object,
        *,
        secret: str = WEBHOOK_SECRET,
        msg_id: str | None = None,
        ts: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = sign(body, secret, msg_id or f"wh_{uuid.uuid4().hex}", ts or int(time.time()))
        return body, headers

    return build


@pytest.fixture
def event_payload():
    """An OpenAI ``response.*`` event body for a response id."""
    import uuid

    def build(response_id: str, event_type: str = "response.completed") -> dict:
        return {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created_at": int(time.time()),
            "data": {"id": response_id},
        }

    return build


@pytest.fixture
def webhook_delivery(worker, simulator, live_server, webhook_secret) -> Iterator[str]:
    """The simulator delivers signed webhooks to our endpoint on a live server thread."""
    url = live_server.url + "/webhooks/openai/"
    simulator.configure(webhook_url=url, webhook_secret=webhook_secret, webhook_delay_s=0.0)
    yield url
    simulator.configure(
        webhook_url=None, webhook_secret=None, webhook_drop_rate=0.0, webhook_duplicate_rate=0.0
    )
