"""Live status: status changes travel through a real Redis to server-sent-event streams.

The streams are driven through Django's ASGI application itself (``project.asgi``), the way
uvicorn calls it, so what is tested is the async view that holds no thread while it waits.

Who may watch: a token, its client's runs only; a session, staff with ``runs.view_run``. How
often and how many: each stream opened is one request of the client's ``read`` allowance, and a
client holds at most ``RUNS_SSE_MAX_PER_CLIENT`` open at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.core.cache import caches
from django.db import connections
from django.urls import reverse

from project.asgi import application
from runs import live, live_slots
from runs.models import Run, Thread
from runs.states import transition
from runs.tasks import start_run
from tests.conftest import API_TOKEN

pytestmark = pytest.mark.django_db(transaction=True)

#: The client of the plain token ``API_TOKEN`` (``BEARER``).
OWNER = "client:default"

TIMEOUT = 15.0


class Stream:
    """One ``GET`` to the ASGI app, read as it streams; ``close()`` is the browser leaving."""

    def __init__(self, path: str, headers: dict[str, str]) -> None:
        self.path, self.headers = path, headers
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.buffer = b""
        self.finished = False

    async def open(self) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver")]
            + [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.gone.wait()
            return {"type": "http.disconnect"}

        self.task = asyncio.create_task(application(scope, receive, self.sent.put))
        start = await asyncio.wait_for(self.sent.get(), TIMEOUT)
        self.headers_sent = {bytes(k).lower(): bytes(v) for k, v in start["headers"]}
        self.content_type = self.headers_sent.get(b"content-type", b"").decode()
        return start["status"]

    async def next_status(self) -> dict[str, Any] | None:
        """The next ``status`` event's data; None when the stream ended."""
        while True:
            if b"\n\n" in self.buffer:
                block, self.buffer = self.buffer.split(b"\n\n", 1)
                lines = dict(
                    line.split(": ", 1) for line in block.decode().splitlines() if ": " in line
                )
                if lines.get("event") == "status":
                    return json.loads(lines["data"])
                continue
            if self.finished:
                return None
            message = await asyncio.wait_for(self.sent.get(), TIMEOUT)
            self.buffer += message.get("body", b"")
            self.finished = not message.get("more_body", False)

    async def close(self) -> None:
        self.gone.set()
        await asyncio.wait_for(self.task, TIMEOUT)


@pytest.fixture(autouse=True)
def close_connections_of_async_code():
    """``sync_to_async`` ran the ORM in asgiref's executor thread: close what it opened there,
    or the test database cannot be dropped at the end of the session."""
    yield

    async def close() -> None:
        await sync_to_async(connections.close_all)()

    asyncio.run(close())


def events_path(run_id: int) -> str:
    return reverse("run-events", args=(run_id,))


BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def make_run(make_run):
    """Runs (and threads) of the ``BEARER`` token's client."""

    def make(status: str = "pending", **fields: object) -> Run:
        run = make_run(status, owner=fields.pop("owner", OWNER), **fields)
        Thread.objects.filter(pk=run.thread_id).update(owner=run.owner)
        return run

    return make


@pytest.fixture
def staff_client(client, db):
    """A logged-in staff user; ``staff_client(may_view=True)`` also has ``runs.view_run``."""

    def login(*, may_view: bool) -> object:
        user = User.objects.create_user("operator", password="pw", is_staff=True)
        if may_view:
            user.user_permissions.add(Permission.objects.get(codename="view_run"))
        client.force_login(user)
        return client

    return login


def subscribers(redis_url: str, run_id: int) -> int:
    return dict(redis.Redis.from_url(redis_url).pubsub_numsub(live.channel(run_id)))[
        live.channel(run_id).encode()
    ]


def test_a_stream_sends_the_run_now_then_each_change_until_it_ends(make_run, pubsub_url, api_token):
    run = make_run("pending")

    async def scenario() -> list[str]:
        stream = Stream(events_path(run.pk), BEARER)
        assert await stream.open() == 200
        assert stream.content_type == "text/event-stream"
        statuses = [(await stream.next_status())["status"]]
        for status in ("queued", "in_progress", "completed"):
            await sync_to_async(transition)(run.pk, status, source="poll")
            statuses.append((await stream.next_status())["status"])
        assert await stream.next_status() is None  # a terminal status ends the stream
        await stream.close()
        return statuses

    assert asyncio.run(scenario()) == ["pending", "queued", "in_progress", "completed"]


def test_the_last_event_carries_the_result(make_run, pubsub_url, api_token):
    run = make_run("in_progress")

    async def scenario() -> dict[str, Any]:
        stream = Stream(events_path(run.pk), BEARER)
        await stream.open()
        await stream.next_status()
        await sync_to_async(transition)(
            run.pk, "completed", source="poll", fields={"output_text": "4"}
        )
        last = await stream.next_status()
        await stream.close()
        return last

    last = asyncio.run(scenario())
    assert (last["status"], last["terminal"], last["output_text"]) == ("completed", True, "4")


def test_a_browser_that_leaves_frees_its_subscription(make_run, pubsub_url, redis_url, api_token):
    run = make_run("queued")

    async def scenario() -> tuple[int, int]:
        stream = Stream(events_path(run.pk), BEARER)
        await stream.open()
        await stream.next_status()
        during = await sync_to_async(subscribers)(redis_url, run.pk)
        await stream.close()
        return during, await sync_to_async(subscribers)(redis_url, run.pk)

    assert asyncio.run(scenario()) == (1, 0)


def test_streams_need_a_token_or_a_staff_session(client, make_run, pubsub_url, api_token):
    run = make_run("completed")
    assert client.get(events_path(run.pk)).status_code == 401
    wrong = client.get(events_path(run.pk), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert client.get(events_path(987654), headers=BEARER).status_code == 404


def test_with_publishing_off_the_stream_says_so(client, make_run, api_token):
    run = make_run("queued")
    response = client.get(events_path(run.pk), headers=BEARER)
    assert response.status_code == 503
    assert "RUNS_PUBSUB_URL" in response.json()["detail"]


def test_the_page_shows_a_run_live_for_staff(admin_client, make_run, pubsub_url):
    run = make_run("completed")
    page = admin_client.get(reverse("run-live", args=(run.pk,))).content.decode()
    assert f'new EventSource("{events_path(run.pk)}")' in page
    # Under WSGI (the dev server) the same stream is served by a blocking generator.
    response = admin_client.get(events_path(run.pk))
    body = b"".join(response.streaming_content).decode()
    assert '"status":"completed"' in body and '"terminal":true' in body


def test_nobody_else_sees_the_page(client, make_run):
    run = make_run("completed")
    response = client.get(reverse("run-live", args=(run.pk,)))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_the_view_permission_neither_see_the_page_nor_stream(
    staff_client, make_run, pubsub_url
):
    run = make_run("completed")
    client = staff_client(may_view=False)
    assert client.get(reverse("run-live", args=(run.pk,))).status_code == 403
    stream = client.get(events_path(run.pk))
    assert stream.status_code == 403
    assert stream.json() == {"detail": "watching runs needs the runs.view_run permission"}


def test_staff_with_the_view_permission_watch_any_owners_run(staff_client, make_run, pubsub_url):
    run = make_run("completed", owner="client:someone-else")
    client = staff_client(may_view=True)
    assert client.get(reverse("run-live", args=(run.pk,))).status_code == 200
    response = client.get(events_path(run.pk))
    assert response.status_code == 200
    assert '"status":"completed"' in b"".join(response.streaming_content).decode()


def test_a_token_streams_only_its_own_clients_runs(client, make_run, pubsub_url, api_token):
    theirs = make_run("completed", owner="client:someone-else")
    legacy = make_run("completed", owner="")
    for run in (theirs, legacy):
        assert client.get(events_path(run.pk), headers=BEARER).status_code == 404


@pytest.mark.integration
def test_a_real_run_streams_to_its_end(worker, simulator, make_run, pubsub_url, api_token):
    """Worker, simulator and stream together: the browser sees the run finish, no polling."""
    run = make_run("pending", metadata={"sim_duration_s": "1.5", "sim_outcome": "completed"})

    async def scenario() -> list[str]:
        stream = Stream(events_path(run.pk), BEARER)
        await stream.open()
        seen = [(await stream.next_status())["status"]]
        await sync_to_async(start_run.delay)(run.pk)
        while (event := await stream.next_status()) is not None:
            seen.append(event["status"])
        await stream.close()
        return seen

    seen = asyncio.run(scenario())
    # Changes a few milliseconds apart may arrive as one (the stream sends the run as it is).
    assert seen[0] == "pending" and seen[-1] == "completed"
    assert seen == sorted(seen, key=["pending", "queued", "in_progress", "completed"].index)


# --- how often and how many: the read throttle and the cap on open streams ----------------------


def test_a_client_holds_at_most_its_cap_of_streams_open(make_run, pubsub_url, api_token, settings):
    settings.RUNS_SSE_MAX_PER_CLIENT = 2
    run = make_run("queued")

    async def scenario() -> tuple[list[int], str, int, int]:
        first, second = Stream(events_path(run.pk), BEARER), Stream(events_path(run.pk), BEARER)
        assert [await first.open(), await second.open()] == [200, 200]
        over = Stream(events_path(run.pk), BEARER)
        statuses = [await over.open()]
        retry_after = over.headers_sent[b"retry-after"].decode()
        await over.close()
        await first.close()  # the browser leaves: its slot is free again
        again = Stream(events_path(run.pk), BEARER)
        statuses.append(await again.open())
        during = await sync_to_async(open_streams)(pubsub_url)
        await again.close()
        await second.close()
        return statuses, retry_after, during, await sync_to_async(open_streams)(pubsub_url)

    statuses, retry_after, during, after = asyncio.run(scenario())
    assert statuses == [429, 200] and int(retry_after) > 0
    assert (during, after) == (2, 0)


def test_opening_a_stream_counts_against_the_clients_read_allowance(
    client, make_run, pubsub_url, api_token, settings
):
    settings.RUNS_API_THROTTLE_RATES = {"read": "2/min"}
    caches[settings.RUNS_API_THROTTLE_CACHE].clear()
    run = make_run("completed")
    assert client.get(f"/api/runs/{run.pk}", headers=BEARER).status_code == 200  # one read
    stream = client.get(events_path(run.pk), headers=BEARER)  # and a stream: the second
    assert b'"status":"completed"' in b"".join(stream.streaming_content)

    throttled = client.get(events_path(run.pk), headers=BEARER)

    assert throttled.status_code == 429 and 1 <= int(throttled["Retry-After"]) <= 60
    assert client.get(f"/api/runs/{run.pk}", headers=BEARER).status_code == 429  # one allowance
    assert open_streams(pubsub_url) == 0  # the stream that ran to its end freed its slot


def open_streams(url: str) -> int:
    return live_slots.open_count(redis.Redis.from_url(url), OWNER)


# --- which Redis: a host that sets nothing gets live status on its Redis ------------------------


@pytest.mark.parametrize(
    "configured, expected",
    [
        (
            {"REDIS_URL": "redis://cache:6379/2", "CELERY_BROKER_URL": "amqp://mq//"},
            "redis://cache:6379/2",
        ),
        ({"REDIS_URL": "", "CELERY_BROKER_URL": "redis://broker:6379/0"}, "redis://broker:6379/0"),
        ({"REDIS_URL": "", "CELERY_BROKER_URL": "amqp://mq//"}, ""),  # no Redis at all: off
        ({"RUNS_PUBSUB_URL": "", "CELERY_BROKER_URL": "redis://broker:6379/0"}, ""),  # off
        ({"RUNS_PUBSUB_URL": "redis://other:6379/5"}, "redis://other:6379/5"),
    ],
)
def test_the_live_status_redis_is_the_settings_else_the_hosts_redis(settings, configured, expected):
    del settings.RUNS_PUBSUB_URL  # unset, as in a host project that never heard of it
    for name, value in configured.items():
        setattr(settings, name, value)
    assert live.pubsub_url() == expected


def test_a_host_that_sets_nothing_streams_through_its_redis(
    make_run, redis_url, api_token, settings
):
    del settings.RUNS_PUBSUB_URL
    settings.REDIS_URL = redis_url
    run = make_run("queued")

    async def scenario() -> list[str]:
        stream = Stream(events_path(run.pk), BEARER)
        assert await stream.open() == 200
        seen = [(await stream.next_status())["status"]]
        await sync_to_async(transition)(run.pk, "completed", source="poll")  # published
        seen.append((await stream.next_status())["status"])
        await stream.close()
        return seen

    assert asyncio.run(scenario()) == ["queued", "completed"]


def test_a_stream_hands_its_database_connection_back_after_each_read(make_run):
    """An open page must not hold one of its process's pooled connections for ten minutes."""
    run = make_run("in_progress")

    snapshot = live._snapshot_and_let_go(run.pk)

    assert snapshot["status"] == "in_progress"
    assert connections["default"].connection is None


def test_inside_a_transaction_the_read_leaves_the_connection_alone(make_run):
    from django.db import transaction

    run = make_run("queued")

    with transaction.atomic():
        assert live._snapshot_and_let_go(run.pk)["status"] == "queued"
        assert connections["default"].connection is not None


def test_a_stream_whose_redis_dies_ends_cleanly_and_the_client_reconnects(
    make_run, api_token, settings
):
    """Killed (or restarted) under an open stream, Redis took the ASGI app down with a
    ``ConnectionError`` for every stream; now the stream ends as at its time limit."""
    from project.localredis import start_private_redis

    server = start_private_redis()  # its own: this test kills it
    settings.RUNS_PUBSUB_URL = server.url
    settings.RUNS_SSE_HEARTBEAT_S, settings.RUNS_SSE_MAX_S = 0.5, 20.0
    run = make_run("queued")

    async def scenario() -> bool:
        stream = Stream(events_path(run.pk), BEARER)
        assert await stream.open() == 200
        await stream.next_status()
        server.process.kill()
        server.process.wait()
        while await stream.next_status() is not None:  # to the end of the stream
            pass
        stream.gone.set()
        await asyncio.wait_for(stream.task, TIMEOUT)  # no exception out of the app
        return stream.finished

    try:
        assert asyncio.run(scenario()) is True
    finally:
        server.stop()


def test_publishing_to_a_redis_that_hangs_costs_one_timeout_then_pauses(
    settings, silent_redis, monkeypatch
):
    """A status change waits at most the publisher's 0.5 s for a Redis that does not answer,
    once: then publishing pauses (``runs.breaker``), so a batch of 200 moves does not spend 100
    s of a worker on a side channel. Open streams catch up at their heartbeat."""
    settings.RUNS_PUBSUB_URL = silent_redis
    change = {"from_status": "queued", "to_status": "in_progress", "source": "poll"}
    live.publish_status_change(None, run_id=1, **change)
    assert live.paused.is_open()

    asked: list[str] = []
    monkeypatch.setattr(live, "_publisher", asked.append)
    for run_id in range(2, 200):
        live.publish_status_change(None, run_id=run_id, **change)
    assert asked == []


def test_a_stream_on_a_redis_that_hangs_ends_at_its_timeout_not_when_tcp_gives_up(
    silent_redis, monkeypatch
):
    """Its subscribe waits for a Redis that never answers: the stream ends, having sent
    nothing, at the stream's own timeout, its connection closed."""
    import time

    monkeypatch.setattr(
        live, "STREAM_REDIS_TIMEOUTS", {"socket_connect_timeout": 0.3, "socket_timeout": 0.3}
    )
    began = time.monotonic()
    assert list(live.stream(1, silent_redis)) == []
    assert time.monotonic() - began < 5


def test_a_slot_counts_briefly_until_its_stream_starts_then_for_the_streams_life(
    make_run, pubsub_url, api_token, settings
):
    """The view takes the slot; the stream, once started, extends it. A client gone before the
    stream started (Django then never runs it, nor its ``finally``) held its slot for the
    stream's whole life (630 s); now for ``live_slots.MARGIN_S``."""
    import time

    settings.RUNS_SSE_MAX_PER_CLIENT, settings.RUNS_SSE_MAX_S = 3, 600.0
    run = make_run("queued")
    r = redis.Redis.from_url(pubsub_url)
    r.delete(live_slots.key(OWNER))  # the Redis is the session's: start from no slot

    async def taken_only() -> float:
        slot = await live_slots.acquire(pubsub_url, OWNER, cap=3, hold_s=live_slots.START_HOLD_S)
        assert slot is not None
        return r.zscore(slot.key, slot.member) / 1000 - time.time()

    async def started() -> float:
        stream = Stream(events_path(run.pk), BEARER)
        assert await stream.open() == 200
        await stream.next_status()
        (_, score), *others = r.zrange(live_slots.key(OWNER), -1, -1, withscores=True)
        await stream.close()
        return score / 1000 - time.time()

    try:
        assert asyncio.run(taken_only()) <= live_slots.MARGIN_S + 1
        assert asyncio.run(started()) >= 600
    finally:
        r.delete(live_slots.key(OWNER))  # the slot never started would count 30 s more


def test_a_slot_that_never_starts_does_not_shorten_the_others(
    make_run, pubsub_url, api_token, settings
):
    """The set of a client's slots lives as long as its last end. A new slot's end (30 s) set
    it shorter than an open stream's (630 s): a request dropped before its first byte made the
    set expire under the open streams, and the client could then open past its cap."""
    settings.RUNS_SSE_MAX_PER_CLIENT, settings.RUNS_SSE_MAX_S = 2, 600.0
    run = make_run("queued")
    r = redis.Redis.from_url(pubsub_url)
    r.delete(live_slots.key(OWNER))  # the Redis is the session's: start from no slot

    async def scenario() -> int:
        stream = Stream(events_path(run.pk), BEARER)
        assert await stream.open() == 200
        await stream.next_status()
        left = await live_slots.acquire(pubsub_url, OWNER, cap=2, hold_s=live_slots.START_HOLD_S)
        assert left is not None  # its client is gone: this slot is never extended
        ttl = r.pttl(live_slots.key(OWNER))
        await stream.close()
        return ttl

    try:
        assert asyncio.run(scenario()) > 600_000
    finally:
        r.delete(live_slots.key(OWNER))
