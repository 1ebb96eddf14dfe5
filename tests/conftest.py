"""Shared fixtures: a private Redis, the simulator over HTTP, a real Celery worker thread.

Integration tests use all three for real: the worker is Celery's own embedded worker (a thread in
this process, never eager mode), tasks travel through Redis, and the backend talks HTTP to the
simulator through the real ``openai`` SDK.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.db import close_old_connections, connection

from project.celery import app as celery_app
from project.localredis import RedisUnavailable, start_private_redis
from runs.client import get_client, get_create_client
from runs.models import Run
from runs.status import TERMINAL
from tests.api_client import As

if TYPE_CHECKING:
    from runs_simulator.testing import RunningSimulator

#: ``RUNS_TEST_STRICT=1`` (set by ``.ci/run``): a test that would skip because a service or a
#: tool is missing (Redis, PostgreSQL, the bench extra, Chromium, Compose) fails instead, so CI
#: can never go green without running everything. Locally the skips stay, with their reason.
STRICT = os.environ.get("RUNS_TEST_STRICT") == "1"


def _strict_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under RUNS_TEST_STRICT=1, where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        _strict_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:
        _strict_failure(report)


@pytest.fixture(autouse=True)
def side_channels_unpaused() -> None:
    """A Redis a test stopped pauses live status and the budget (``runs.breaker``); the next
    test starts with both asked again."""
    from runs import budget, live

    budget.paused.reset()
    live.paused.reset()


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
def amqp_url() -> str:
    """The RabbitMQ of the broker tests: ``RUNS_TEST_AMQP_URL`` (default: guest on 127.0.0.1);
    when it does not answer they skip with that reason (and fail under ``RUNS_TEST_STRICT=1``)."""
    from kombu import Connection

    url = os.environ.get("RUNS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        where = url.rsplit("@", 1)[-1]
        pytest.skip(
            f"RabbitMQ does not answer at {where} ({type(exc).__name__}); "
            "start it or set RUNS_TEST_AMQP_URL"
        )
    return url


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    """The local OpenAI-compatible server, started as a subprocess on a free port."""
    from runs_simulator.testing import RunningSimulator

    with RunningSimulator() as sim:
        yield sim


@pytest.fixture
def sdk_on_simulator(settings, simulator: RunningSimulator) -> Iterator[RunningSimulator]:
    """Our clients (``runs.client``), in this process, pointed at the simulator; rebuilt after."""
    settings.OPENAI_BASE_URL = simulator.base_url
    get_client.cache_clear()
    get_create_client.cache_clear()
    yield simulator
    get_client.cache_clear()
    get_create_client.cache_clear()


@pytest.fixture(scope="session")
def celery_worker(
    redis_url: str, simulator: RunningSimulator, django_db_setup: None, django_db_blocker
) -> Iterator[object]:
    """A real Celery worker (threads pool) consuming from the private Redis."""
    from celery.contrib.testing.worker import start_worker

    celery_app.conf.update(broker_url=redis_url, broker_connection_retry_on_startup=True)
    # A test that published before this one (an API test whose view enqueues on commit) left the
    # app's connection and producer pools on the default broker: drop both, as Celery does after
    # a fork, so this process publishes where the worker consumes.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    settings.OPENAI_BASE_URL = simulator.base_url
    get_client.cache_clear()
    get_create_client.cache_clear()
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
def quick_polls(settings) -> None:
    """A faster poll schedule than the tutorial's (0.2 s, capped at 1 s), for tests about a loop
    rather than the backoff."""
    settings.RUNS_POLL_BASE_S = 0.2
    settings.RUNS_POLL_CAP_S = 1.0


@pytest.fixture
def beat_sending_poll_due() -> Callable[..., AbstractContextManager[None]]:
    """Stand in for celery beat's ``runs-poll-due`` entry, which polls the runs polled by due
    time (by default webhook runs' safety nets): ``with beat_sending_poll_due(every_s=0.2):``
    sends ``runs.poll_due`` through the broker every 0.2 s until the block ends (``every_s``
    None: not at all)."""
    from runs.tasks import poll_due

    @contextmanager
    def sending(every_s: float | None = 0.2) -> Iterator[None]:
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(every_s):
                # Dropped if not taken within a second, as beat's own entry expires its ticks:
                # none is left in the queue for the next test.
                poll_due.apply_async(expires=1.0)

        sender = threading.Thread(target=tick, daemon=True) if every_s else None
        if sender:
            sender.start()
        try:
            yield
        finally:
            stop.set()
            if sender:
                sender.join(timeout=5)

    return sending


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
def sent_tasks(monkeypatch) -> list[tuple[str, tuple, float | None]]:
    """What the engine enqueued, as ``(task name, args, countdown)``, instead of a broker.

    The engine sends every task through ``runs.engine.enqueue.send`` by name, so this one stand-in
    sees starts, polls, cancels and tool rounds alike (for tests of a view or an admin action).
    """
    from runs.engine import enqueue

    sent: list[tuple[str, tuple, float | None]] = []

    def send(
        name: str,
        *args: object,
        countdown: float | None = None,
        kind: str | None = None,
        producer: object = None,
    ) -> None:
        sent.append((name, args, countdown))

    monkeypatch.setattr(enqueue, "send", send)
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 0)  # no broker, no backlog
    return sent


@pytest.fixture
def at_once() -> Callable[..., None]:
    """``at_once(work, n=2)``: ``work(slot)`` on ``n`` threads released together by a barrier,
    each closing its database connection when done; returns once all have. For races between
    claimers, which only PostgreSQL's row locks make interesting (``on_postgres``)."""

    def run(work: Callable[[int], object], n: int = 2) -> None:
        barrier = threading.Barrier(n)

        def body(slot: int) -> None:
            try:
                barrier.wait(timeout=10)
                work(slot)
            finally:
                close_old_connections()

        threads = [threading.Thread(target=body, args=(slot,)) for slot in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return run


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

    from runs_simulator.signing import sign

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


# --- tool calls (issue 6) ------------------------------------------------------------------------


@pytest.fixture(params=["responses", "assistants"])
def api_backend(request: pytest.FixtureRequest) -> str:
    """Each OpenAI API we support: a test taking this runs once per backend."""
    return request.param


@pytest.fixture
def register_tool() -> Iterator[Callable[..., object]]:
    """Register test-only tools (``runs.tools.register`` arguments); unregistered after the test.

    The worker is a thread of the test process, so it sees them at once.
    """
    from runs import tools

    names: list[str] = []

    def register(func: Callable[..., object] | None = None, **options: object) -> object:
        registered = tools.register(func, **options)
        names.append(registered.name)
        return registered

    yield register
    for name in names:
        tools.unregister(name)


@pytest.fixture
def wait_until() -> Callable[..., Run]:
    """Wait (in the test) until ``check(run)`` holds for a run; fail with its story if not."""

    def wait(run_id: int, check: Callable[[Run], bool], timeout: float = 20.0) -> Run:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = Run.objects.get(pk=run_id)
            if check(run):
                return run
            time.sleep(0.05)
        events = list(Run.objects.get(pk=run_id).events.values_list("to_status", "source"))
        pytest.fail(f"run {run_id} never got there in {timeout} s: {run.status}, events {events}")

    return wait


# --- operators: API, live status, admin (issue 8) ------------------------------------------------

API_TOKEN = "test-token-for-the-runs-api"


@pytest.fixture
def api_token(settings) -> str:
    """A bearer token the JSON API accepts for this test (``RUNS_API_TOKENS``)."""
    settings.RUNS_API_TOKENS = [API_TOKEN]
    return API_TOKEN


@pytest.fixture
def api(client, api_token) -> As:
    """``api.get/post(path, json=...)`` against ``/api/`` with the token; returns the response."""
    return As(client, api_token)


@pytest.fixture
def acme(client) -> As:
    """Client ``acme``'s token (``tok-acme``), for tests whose RUNS_API_TOKENS name it."""
    return As(client, "tok-acme")


@pytest.fixture
def beta(client) -> As:
    """Client ``beta``'s token (``tok-beta``): another owner, whose rows acme never sees."""
    return As(client, "tok-beta")


@pytest.fixture
def pubsub_url(redis_url: str, settings) -> str:
    """Live-status publishing on, through the private Redis."""
    settings.RUNS_PUBSUB_URL = redis_url
    return redis_url


@pytest.fixture
def make_run(db):
    """A run in any state without OpenAI: ``make_run(status="queued", remote_id="resp_1", ...)``.

    Statuses are reached through the state machine, so the run has a real timeline.
    """
    from runs.services import create_run
    from runs.states import transition

    path = {
        "queued": ["queued"],
        "in_progress": ["queued", "in_progress"],
        "requires_action": ["queued", "in_progress", "requires_action"],
        "cancelling": ["queued", "in_progress", "cancelling"],
    }

    def make(status: str = "pending", *, text: str = "hello", **fields: object) -> Run:
        metadata = fields.pop("metadata", None)
        run = create_run(text, metadata=metadata)
        if fields:
            Run.objects.filter(pk=run.pk).update(**fields)
        steps = path.get(status, [] if status == "pending" else ["queued", "in_progress", status])
        for step in steps:
            assert transition(run.pk, step, source="poll")
        run.refresh_from_db()
        return run

    return make


@pytest.fixture
def run_row(db):
    """A bare run row as some code would find it, with no timeline: ``run_row("in_progress",
    remote_id="resp_1", next_poll_at=...)``. For the state machine, the sweep and the intake,
    which act on rows in any status; ``make_run`` gets there through the state machine instead.
    """
    from runs.models import Thread

    def make(status: str = "pending", **fields: object) -> Run:
        fields.setdefault("model", "m")
        return Run.objects.create(thread=Thread.objects.create(), status=status, **fields)

    return make


# --- the request budget --------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told: stands in for Redis's clock in ``runs.budget``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def token_bucket(settings, redis_url) -> Iterator[object]:
    """The shared request budget in the private Redis, full: 5 calls/s with a 1 s burst (5 tokens,
    one of which polls leave to creates). Yields ``settings``, to change the rate."""
    import redis

    from runs import budget

    settings.RUNS_BUDGET_REDIS_URL = redis_url
    settings.RUNS_MAX_RPS = 5.0
    settings.RUNS_BUDGET_BURST_S = 1.0
    budget.reset_connection()
    redis.Redis.from_url(redis_url).delete(budget.KEY)
    yield settings
    redis.Redis.from_url(redis_url).delete(budget.KEY)
    budget.reset_connection()


@pytest.fixture
def budget_clock(monkeypatch) -> FakeClock:
    """The token bucket's clock, frozen until the test advances it: no refill happens between two
    calls, so what the bucket grants is exact."""
    from runs import budget

    clock = FakeClock()
    monkeypatch.setattr(budget, "clock", clock.time)
    return clock


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A Redis URL whose server takes the connection and never answers (a Redis that hangs
    rather than refuses): every command waits for its socket timeout."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()
