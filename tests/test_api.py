"""The JSON API: what each operation does, and how it says no (nothing written when it does).

The ``api`` fixture's token is a plain one: client ``default``, scope ``operate``. Owners, scopes,
allow-lists and throttling have their own tests in ``test_api_scopes.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.db import connections

from runs import services, tool_runner
from runs.metadata_query import with_entry
from runs.models import Message, Run, Thread, ToolCall

pytestmark = pytest.mark.django_db

#: Who the ``api`` fixture's plain token speaks for.
OWNER = "client:default"


@pytest.fixture(autouse=True)
def full_allowance() -> None:
    """The throttles' history lives in the cache across tests: start each with none."""
    caches["default"].clear()


@pytest.fixture
def make_run(make_run):
    """Runs (and their threads) owned by the ``api`` fixture's client, so it sees them."""

    def make(status: str = "pending", **fields: object) -> Run:
        run = make_run(status, owner=OWNER, **fields)
        Thread.objects.filter(pk=run.thread_id).update(owner=OWNER)
        return run

    return make


@pytest.fixture
def enqueues(django_capture_on_commit_callbacks, sent_tasks):
    """``with enqueues() as started:`` the run ids whose ``start_run`` was enqueued on commit."""

    @contextlib.contextmanager
    def watch() -> Iterator[list[int]]:
        started: list[int] = []
        with django_capture_on_commit_callbacks(execute=True):
            yield started
        started.extend(args[0] for name, args, _ in sent_tasks if name == "runs.start_run")

    return watch


def snapshot() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Thread, Message, Run, ToolCall))


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dXNlcjpwdw==", "Bearer "])
def test_every_operation_needs_a_valid_token(client, api_token, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/runs", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}


def test_with_no_tokens_configured_nobody_gets_in(client, settings):
    settings.RUNS_API_TOKENS = []
    assert client.get("/api/runs", headers={"Authorization": "Bearer "}).status_code == 401


def test_the_schema_is_public_and_describes_every_operation(client):
    schema = client.get("/api/openapi.json").json()
    operations = {(m.upper(), p) for p, item in schema["paths"].items() for m in item}
    assert operations == {
        ("POST", "/api/threads"),
        ("GET", "/api/threads/{thread_id}"),
        ("POST", "/api/threads/{thread_id}/messages"),
        ("POST", "/api/runs"),
        ("GET", "/api/runs"),
        ("GET", "/api/runs/{run_id}"),
        ("POST", "/api/runs/{run_id}/cancel"),
        ("POST", "/api/runs/{run_id}/retry"),
        ("POST", "/api/runs/{run_id}/tool_outputs"),
        ("POST", "/api/batches"),
        ("GET", "/api/batches"),
        ("GET", "/api/batches/{batch_id}"),
        ("POST", "/api/batches/{batch_id}/cancel"),
        ("GET", "/api/costs"),
    }
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


# --- threads, messages, runs ----------------------------------------------------------------------


def test_a_thread_gets_messages_then_a_run(api, enqueues):
    thread = api.post("/threads", {"metadata": {"customer": "c-1"}})
    assert thread.status_code == 201
    thread_id = thread.json()["id"]
    message = api.post(f"/threads/{thread_id}/messages", {"content": "What is 2 + 2?"})
    assert message.status_code == 201
    assert message.json()["sent_at"] is None

    with enqueues() as started:
        run = api.post("/runs", {"thread_id": thread_id, "metadata": {"ticket": "T-1"}})
    assert run.status_code == 201
    body = run.json()
    assert (body["status"], body["thread_id"], body["terminal"]) == ("pending", thread_id, False)
    assert started == [body["id"]]


def test_start_a_run_from_text_in_one_call(api, enqueues):
    with enqueues() as started:
        response = api.post(
            "/runs", {"text": "Say hello", "strategy": "webhook", "deadline_s": 30, "model": "m-1"}
        )
    assert response.status_code == 201
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.strategy, run.model) == ("webhook", "m-1")
    assert run.thread.messages.get().content == "Say hello"
    assert started == [run.pk]


def test_get_a_run_with_its_timeline(api, make_run):
    run = make_run("in_progress", remote_id="resp_1")
    body = api.get(f"/runs/{run.pk}").json()
    assert body["remote_id"] == "resp_1"
    assert [(e["from_status"], e["to_status"]) for e in body["events"]] == [
        ("pending", "queued"),
        ("queued", "in_progress"),
    ]
    assert body["tool_calls"] == []


# --- listing --------------------------------------------------------------------------------------


def test_list_filters_by_status_backend_strategy_thread_and_metadata(api, make_run):
    """On SQLite as on PostgreSQL: ``meta=k=v`` was a 500 on SQLite."""
    done = make_run("completed", metadata={"customer": "c-1"})
    make_run("failed", metadata={"customer": "c-2"})

    def ids(**params: object) -> list[int]:
        response = api.get("/runs", **params)
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["items"]]

    assert ids(status="completed") == [done.pk]
    assert ids(meta="customer=c-1") == [done.pk]
    assert ids(thread_id=done.thread_id) == [done.pk]
    assert len(ids(backend="responses", strategy="poll")) == 2
    assert ids(created_after="2999-01-01T00:00:00Z") == []
    assert len(ids(created_before="2999-01-01T00:00:00")) == 2  # naive: UTC


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("customer", "c-1"),
        ("a.b", "x y"),
        ('say "hi"', "it's"),
        ("$[0]", "ключ"),
        ("n", "1"),
        ("k", ""),
        ("7", "x"),  # a key that reads as an integer: not an array index
        ("-1", "y"),
    ],
)
def test_meta_matches_one_entry_exactly_whatever_its_characters(api, make_run, key, value):
    """Run on SQLite and on PostgreSQL (``RUNS_TEST_SQLITE=1`` picks SQLite): the text of the
    key and the value is data, never JSON or a path."""
    match = make_run(metadata={key: value})
    make_run(metadata={key: f"{value}-other"})
    make_run(metadata={"other": value})
    response = api.get("/runs", meta=f"{key}={value}")
    assert response.status_code == 200, response.content
    assert [r["id"] for r in response.json()["items"]] == [match.pk]


@pytest.mark.skipif("sqlite" not in connections, reason="the default database is SQLite already")
@pytest.mark.django_db(databases=["default", "sqlite"])
@pytest.mark.parametrize(
    ("key", "value"), [("customer", "c-1"), ('say "hi"', "it's"), ("k", ""), ("7", "x")]
)
def test_meta_on_sqlite_in_a_postgresql_session(key, value):
    """The SQLite half of the test above when the session runs on PostgreSQL: the same filter
    on the second (SQLite) database, so CI covers both ways of asking."""
    thread = Thread.objects.using("sqlite").create()
    match = Run.objects.using("sqlite").create(thread=thread, model="m", metadata={key: value})
    Run.objects.using("sqlite").create(thread=thread, model="m", metadata={key: f"{value}-x"})
    Run.objects.using("sqlite").create(thread=thread, model="m", metadata={"other": value})

    found = with_entry(Run.objects.using("sqlite"), key, value)

    assert [r.pk for r in found] == [match.pk]


def test_list_pages_with_a_cursor_newest_first(api, make_run):
    runs = [make_run() for _ in range(5)]
    newest_first = [r.pk for r in reversed(runs)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/runs", **params).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first


# --- cancel, retry, tool outputs ------------------------------------------------------------------


def test_cancel_a_run_not_sent_yet(api, make_run):
    run = make_run("pending")
    response = api.post(f"/runs/{run.pk}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"


def test_cancel_an_active_run_hands_the_call_to_a_task(
    api, make_run, django_capture_on_commit_callbacks, sent_tasks
):
    run = make_run("queued", remote_id="resp_1")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/runs/{run.pk}/cancel")
    assert response.json()["status"] == "cancelling"
    assert sent_tasks == [("runs.cancel_run", (run.pk,), None)]


def test_cancel_asked_again_sends_the_cancel_again(
    api, make_run, sent_tasks, django_capture_on_commit_callbacks
):
    """The first cancel's message may have been lost (a broker down at that request): asking
    again re-sends it, and the run stays cancelling until OpenAI answers."""
    run = make_run("in_progress", remote_id="resp_x")
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(f"/runs/{run.pk}/cancel")
        assert response.json()["status"] == "cancelling"
    assert sent_tasks == [("runs.cancel_run", (run.pk,), None)] * 2
    assert run.events.filter(to_status="cancelling").count() == 1


def test_a_cancel_from_the_admin_shows_the_client_an_operator_not_the_staff_user(api, make_run):
    run = make_run("pending")
    services.cancel_run(run, by="admin:alice")

    events = api.get(f"/runs/{run.pk}").json()["events"]

    assert events[-1]["detail"] == {"requested_by": "operator"}
    assert "alice" not in json.dumps(events)


def test_cancel_of_an_ended_run_is_a_conflict(api, make_run):
    run = make_run("completed")
    before = snapshot()
    response = api.post(f"/runs/{run.pk}/cancel")
    assert response.status_code == 409
    assert response.json() == {"detail": f"run {run.pk} already ended (completed)"}
    assert snapshot() == before


def test_retry_an_ended_run(api, make_run, enqueues):
    old = make_run("failed")
    with enqueues() as started:
        response = api.post(f"/runs/{old.pk}/retry")
    assert response.status_code == 201
    assert response.json()["metadata"] == {"retry_of": str(old.pk)}
    assert started == [response.json()["id"]]


def test_tool_outputs_are_all_or_nothing(api, make_run):
    run = make_run("requires_action", remote_id="resp_1")
    for call_id in ("call_a", "call_b"):
        ToolCall.objects.create(run=run, call_id=call_id, name="ask", state="manual")
    response = api.post(
        f"/runs/{run.pk}/tool_outputs",
        {
            "tool_outputs": [
                {"call_id": "call_a", "output": "yes"},
                {"call_id": "nope", "output": ""},
            ]
        },
    )
    assert response.status_code == 400
    assert "no tool call 'nope'" in response.json()["detail"]
    assert set(run.tool_calls.values_list("state", flat=True)) == {"manual"}


def test_tool_outputs_are_saved(api, make_run, django_capture_on_commit_callbacks, sent_tasks):
    run = make_run("requires_action", remote_id="resp_1")
    ToolCall.objects.create(run=run, call_id="call_a", name="ask", state="manual")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/runs/{run.pk}/tool_outputs",
            {"tool_outputs": [{"call_id": "call_a", "output": "42"}]},
        )
    assert response.status_code == 200, response.content
    assert response.json()["tool_calls"][0]["output"] == "42"
    assert sent_tasks == [("runs.resume_tool_round", (run.pk,), None)]


def test_a_failed_tool_shows_what_the_model_was_told_never_the_traceback(
    api, make_run, register_tool
):
    """``ToolCall.error`` keeps the message and traceback for operators (the admin); a client of
    the API gets the text the model got, in ``GET /runs/{id}`` and the tool_outputs answer."""

    def lookup(customer: str) -> str:
        raise ConnectionError(f"db01.internal:5432 refused the query for {customer}")

    register_tool(lookup)
    failed = tool_runner.execute("lookup", '{"customer": "alice@example.com"}', ["lookup"])
    run = make_run("requires_action", remote_id="resp_1")
    ToolCall.objects.create(
        run=run,
        call_id="call_f",
        name="lookup",
        state="error",
        output=failed.output,
        error=failed.error,
    )
    ToolCall.objects.create(run=run, call_id="call_m", name="ask", state="manual")
    assert "Traceback" in failed.error and "db01.internal" in failed.error  # the admin's detail

    detail = api.get(f"/runs/{run.pk}").json()["tool_calls"]
    answer = api.post(
        f"/runs/{run.pk}/tool_outputs", {"tool_outputs": [{"call_id": "call_m", "output": "ok"}]}
    )
    assert [(c["call_id"], c["error"]) for c in detail] == [
        ("call_f", "tool lookup failed: ConnectionError"),
        ("call_m", ""),  # not failed: nothing to show
    ]
    assert answer.status_code == 200, answer.content
    assert answer.json()["tool_calls"][0]["error"] == ""  # a manual output is no failure
    for body in (str(detail), str(answer.json())):
        assert "db01.internal" not in body and "alice@" not in body and "Traceback" not in body


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/runs", {}, 400, "give the text of the first message"),
        ("/runs", {"text": "hi", "backend": "nope"}, 422, "backend"),
        ("/runs", {"text": "hi", "deadline_s": 0}, 422, "deadline_s"),
        ("/runs", {"text": "hi", "surprise": 1}, 422, "surprise"),
        ("/runs", {"text": "nul \x00 inside"}, 422, "NUL"),
        ("/runs", {"text": "hi", "metadata": {f"k{i}": "v" for i in range(16)}}, 422, "metadata"),
        ("/runs", {"thread_id": 2**63}, 422, "thread_id"),
        ("/threads", {"backend": 3}, 422, "backend"),
        ("/threads/{thread}/messages", {"content": "   "}, 422, "content"),
        ("/threads/{thread}/messages", {"content": "x", "role": "robot"}, 422, "role"),
    ],
)
def test_bad_input_is_refused_with_a_message_and_writes_nothing(
    api, make_run, path, body, status, says
):
    run = make_run("pending")
    before = snapshot()
    response = api.post(path.format(thread=run.thread_id), body)
    assert response.status_code == status, response.content
    assert says in str(response.json()["detail"])
    assert snapshot() == before


def test_a_thread_of_another_backend_is_refused(api, make_run):
    run = make_run("pending")
    before = snapshot()
    response = api.post("/runs", {"thread_id": run.thread_id, "backend": "assistants"})
    assert response.status_code == 400
    assert "belongs to the responses backend" in response.json()["detail"]
    assert snapshot() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/runs/987654"),
        ("post", "/runs/987654/cancel"),
        ("post", "/runs/987654/retry"),
        ("get", "/threads/987654"),
        ("post", "/threads/987654/messages"),
    ],
)
def test_unknown_ids_are_404(api, method, path):
    body = {"content": "hi"} if path.endswith("messages") else None
    response = api.get(path) if method == "get" else api.post(path, body)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_a_run_start_on_an_unknown_thread_is_404_and_writes_nothing(api):
    before = snapshot()
    assert api.post("/runs", {"thread_id": 987654}).status_code == 404
    assert snapshot() == before


def test_a_body_too_large_to_read_is_a_413_in_json(api, make_run, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    run = make_run("requires_action")
    response = api.post(
        f"/runs/{run.pk}/tool_outputs", {"tool_outputs": [{"call_id": "c", "output": "x" * 2_000}]}
    )
    assert response.status_code == 413
    assert response.json() == {
        "detail": "the request body is larger than the 1000 bytes this server accepts"
    }


@pytest.mark.parametrize(("method", "path"), [("delete", "/runs/1"), ("get", "/runs/1/retry")])
def test_a_method_a_path_does_not_take_is_a_json_405_with_allow(api, method, path):
    response = getattr(api.client, method)(f"/api{path}", headers=api.headers)

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert "not allowed" in response.json()["detail"]
    assert response["Allow"]


def test_a_token_sent_with_another_scheme_is_a_401_and_never_logged(
    client, api_token, settings, caplog
):
    settings.DEBUG = True  # django-ninja logged such a header whole under DEBUG
    with caplog.at_level(logging.DEBUG):
        response = client.get("/api/runs", headers={"Authorization": f"Token {api_token}"})

    assert response.status_code == 401
    assert api_token not in caplog.text
