"""The webhook intake's own path under an ASGI server (runs/intake/asgi.py).

Under uvicorn, the demo project's ``application`` hands a delivery to Django's WSGI handler on a
thread pool, where the intake costs 0.6x the web CPU it costs on Django's ASGI handler; every
other request, and a delivery whose body is not framed by ``Content-Length`` alone, stays on the
ASGI handler. The first tests call the wrapper as an ASGI server would, with a stand-in for the
ASGI handler that answers 599, so each answer says which side served it; the last ones go over
real HTTP through uvicorn and ask Django which handler started the request.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.urls import NoReverseMatch

from project.localredis import free_port
from runs.intake.asgi import with_intake_on_wsgi
from runs.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


async def _stand_in(scope, receive, send) -> None:
    """Django's ASGI handler, as far as these tests care: it answers 599."""
    await send({"type": "http.response.start", "status": 599, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi"})


def _scope(path: str, body: bytes, headers: dict[str, str], **options) -> dict:
    """An HTTP POST's scope as uvicorn makes it; ``length=False`` leaves out Content-Length,
    ``extra`` adds raw headers, ``root_path`` names the server's prefix."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if options.get("length", True):
        raw.append((b"content-length", str(len(body)).encode()))
    raw += options.get("extra", [])
    root = options.get("root_path", "")
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": root + path, "raw_path": (root + path).encode(),
        "query_string": b"", "root_path": root, "headers": raw, "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip


#: In a body's parts: the client sends nothing more, and stays.
STALL = object()


async def _answer(app, scope: dict, parts: list) -> tuple[int, bytes] | None:
    """Send ``parts`` of a body through ``app`` (None: the client leaves; ``STALL``: it stays
    silent): (status, body), or None if nothing came back."""
    sent: list[dict] = []
    parts = list(parts)

    async def receive() -> dict:
        chunk = parts.pop(0)
        if chunk is STALL:
            await asyncio.Event().wait()  # a client that sends nothing more
        if chunk is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    starts = [m["status"] for m in sent if m["type"] == "http.response.start"]
    if not starts:
        return None
    return starts[0], b"".join(
        m.get("body", b"") for m in sent if m["type"] == "http.response.body"
    )


def _call(app, path: str, body: bytes, headers: dict[str, str], **options):
    """One POST through ``app`` (in two parts of the body where ``length=False``)."""
    parts = [body[:10], body[10:]] if not options.get("length", True) else [body]
    return asyncio.run(_answer(app, _scope(path, body, headers, **options), parts))


@pytest.fixture
def delivery(make_run, signed, event_payload, webhook_secret, sent_tasks):
    """A signed ``response.completed`` for an in-progress webhook run: (run, body, headers)."""
    run = make_run("in_progress", remote_id="resp_asgi_1", strategy="webhook")
    body, headers = signed(event_payload("resp_asgi_1"))
    return run, body, headers


def test_a_delivery_is_served_on_the_wsgi_handler_and_recorded(delivery):
    run, body, headers = delivery
    status, answer = _call(with_intake_on_wsgi(_stand_in), "/webhooks/openai/", body, headers)
    assert status == 200, answer
    assert json.loads(answer)["status"] == "ok"
    assert WebhookEvent.objects.get(webhook_id=headers["webhook-id"]).object_id == run.remote_id


def test_a_chunked_delivery_stays_on_the_asgi_handler(delivery):
    _, body, headers = delivery
    app = with_intake_on_wsgi(_stand_in)
    assert _call(app, "/webhooks/openai/", body, headers, length=False) == (599, b"asgi")
    assert not WebhookEvent.objects.exists()


def test_a_body_framed_by_chunks_despite_its_length_stays_on_the_asgi_handler(delivery):
    """The WSGI request would read only Content-Length bytes of it, and refuse it as forged."""
    _, body, headers = delivery
    chunked = [(b"transfer-encoding", b"chunked")]
    app = with_intake_on_wsgi(_stand_in)
    assert _call(app, "/webhooks/openai/", body, headers, extra=chunked) == (599, b"asgi")


def test_behind_the_servers_root_path_the_intake_still_takes_its_own_path(delivery):
    _, body, headers = delivery
    app = with_intake_on_wsgi(_stand_in)
    status, answer = _call(app, "/webhooks/openai/", body, headers, root_path="/runs-app")
    assert status == 200, answer
    assert WebhookEvent.objects.filter(webhook_id=headers["webhook-id"]).exists()


def test_a_path_still_carrying_a_forced_script_name_stays_on_the_asgi_handler(delivery, settings):
    """Django's ASGI request strips FORCE_SCRIPT_NAME from the path, its WSGI request does not."""
    _, body, headers = delivery
    settings.FORCE_SCRIPT_NAME = "/runs-app"
    app = with_intake_on_wsgi(_stand_in, paths=["/webhooks/openai/"])
    assert _call(app, "/runs-app/webhooks/openai/", body, headers) == (599, b"asgi")


def test_a_sender_that_trickles_its_body_holds_no_thread_of_the_pool(delivery):
    """Bodies are read on the event loop: with one thread, a stalled request does not stop the
    next delivery."""
    _, body, headers = delivery
    app = with_intake_on_wsgi(_stand_in, threads=1)

    async def both() -> tuple[int, bytes] | None:
        stalled = asyncio.ensure_future(
            _answer(app, _scope("/webhooks/openai/", body, headers), [body[:10], STALL])
        )
        await asyncio.sleep(0.1)
        answered = await asyncio.wait_for(
            _answer(app, _scope("/webhooks/openai/", body, headers), [body]), 10
        )
        assert not stalled.done()
        stalled.cancel()
        return answered

    status, answer = asyncio.run(both())
    assert status == 200, answer


def test_a_client_gone_before_its_body_is_answered_nothing_and_changes_nothing(delivery):
    _, body, headers = delivery
    app = with_intake_on_wsgi(_stand_in)
    scope = _scope("/webhooks/openai/", body, headers)
    assert asyncio.run(_answer(app, scope, [body[:10], None])) is None
    assert not WebhookEvent.objects.exists()


def test_every_other_path_stays_on_the_asgi_handler(delivery):
    _, body, headers = delivery
    app = with_intake_on_wsgi(_stand_in)
    assert _call(app, "/api/runs/", body, headers) == (599, b"asgi")


def test_a_host_may_name_its_own_paths(delivery):
    _, body, headers = delivery
    app = with_intake_on_wsgi(_stand_in, paths=["/hooks/elsewhere/"])
    assert _call(app, "/webhooks/openai/", body, headers) == (599, b"asgi")


@pytest.mark.parametrize("failure", [NoReverseMatch, ImproperlyConfigured])
def test_a_host_whose_intake_url_cannot_be_looked_up_keeps_everything_on_the_asgi_handler(
    delivery, monkeypatch, caplog, failure
):
    def lookup_fails(name: str) -> str:
        raise failure(name)

    _, body, headers = delivery
    monkeypatch.setattr("runs.intake.asgi.reverse", lookup_fails)
    app = with_intake_on_wsgi(_stand_in)
    assert _call(app, "/webhooks/openai/", body, headers) == (599, b"asgi")
    assert _call(app, "/admin/", b"", {}) == (599, b"asgi")
    assert "no URL named 'openai-webhook' could be looked up" in caplog.text


# --- over HTTP, through uvicorn ------------------------------------------------------------------


@pytest.fixture
def handlers() -> Iterator[list[type]]:
    """The class of each Django handler that started a request meanwhile."""
    from django.core.signals import request_started

    seen: list[type] = []

    def started(sender: type, **_: object) -> None:
        seen.append(sender)

    request_started.connect(started)
    yield seen
    request_started.disconnect(started)


@pytest.fixture
def served(webhook_secret) -> Iterator[str]:
    """The demo project's ASGI application under uvicorn, on a thread of this process: its URL."""
    import uvicorn

    from project.asgi import application

    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    give_up = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < give_up, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_over_http_a_delivery_is_recorded_and_wakes_its_run(served, delivery, sent_tasks, handlers):
    run, body, headers = delivery
    answer = httpx.post(served + "/webhooks/openai/", content=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert handlers == [WSGIHandler]
    assert answer.json()["status"] == "ok"
    assert [args for name, args, _ in sent_tasks if name == "runs.poll_run"][0][0] == run.pk


def test_over_http_a_body_over_the_limit_is_refused_before_it_is_read(served, delivery, settings):
    _, body, headers = delivery
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    answer = httpx.post(served + "/webhooks/openai/", content=body * 3, headers=headers, timeout=10)
    assert answer.status_code == 413
    assert "larger than this server accepts" in answer.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_over_http_a_chunked_delivery_is_recorded_too(served, delivery, handlers):
    _, body, headers = delivery

    def chunks() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    answer = httpx.post(served + "/webhooks/openai/", content=chunks(), headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert WebhookEvent.objects.filter(webhook_id=headers["webhook-id"]).exists()
    assert [h.__name__ for h in handlers] == ["ASGIHandler"]


def test_over_http_every_other_path_is_served_by_the_asgi_handler(served, handlers):
    assert httpx.get(served + "/admin/login/", timeout=10).status_code == 200
    assert [h.__name__ for h in handlers] == ["ASGIHandler"]
