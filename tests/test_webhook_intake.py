"""The webhook endpoint: verify with the SDK, record once, wake the run, never trust a forgery.

Secrets (runs/intake/secrets.py): during a rotation the current secret and every fallback
verify, any other does not; a malformed configured secret is our misconfiguration (500, nothing
written, reported by the system check runs.E101), never a 400 as if the delivery were forged.

The wake is the real one (a fresh poll ticket, the event counted: taken by the event's own
insert on PostgreSQL, by ``runs.engine.writer.wake`` after it on SQLite, ``insert_then_wake``);
only the broker is a stand-in (``sent_tasks``), so each test sees the poll the wake enqueued.
The integration tests in test_webhook_strategy.py run the whole loop with a worker and the
simulator.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone

from runs.checks import check_webhook_secrets
from runs.engine import enqueue
from runs.models import Run, WebhookEvent
from runs_simulator.signing import sign
from tests.conftest import WEBHOOK_SECRET

URL = "/webhooks/openai/"


@pytest.fixture
def run(run_row) -> Run:
    """An active run whose poll holds ticket 0."""
    return run_row("in_progress", remote_id="resp_1")


def post(client: Client, body: bytes, headers: dict[str, str]):
    return client.post(
        URL,
        body,
        content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
    )


def assert_woken_once(run: Run, sent_tasks: list, *, ticket: int = 1) -> None:
    """The real wake's effects: the event counted, a fresh ticket, and one immediate poll holding
    it (the poll already waiting holds an older ticket, so it will exit without an API call)."""
    run.refresh_from_db()
    assert run.webhook_events == 1
    assert run.poll_generation == ticket
    assert sent_tasks == [("runs.poll_run", (run.pk, ticket), None)]


def assert_not_woken(run: Run, sent_tasks: list) -> None:
    run.refresh_from_db()
    assert (run.webhook_events, run.poll_generation) == (0, 0)
    assert sent_tasks == []


pytestmark = pytest.mark.django_db


def test_a_valid_event_is_recorded_and_wakes_its_run(
    client, webhook_secret, signed, event_payload, run, sent_tasks
):
    body, headers = signed(event_payload("resp_1"))
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "outcome": "applied"}
    event = WebhookEvent.objects.get()
    assert (event.webhook_id, event.type, event.object_id, event.run) == (
        headers["webhook-id"],
        "response.completed",
        "resp_1",
        run,
    )
    assert_woken_once(run, sent_tasks)


def test_a_duplicate_delivery_answers_200_and_does_nothing(
    client, webhook_secret, signed, event_payload, run, sent_tasks
):
    body, headers = signed(event_payload("resp_1"))
    assert post(client, body, headers).status_code == 200
    again = post(client, body, headers)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert WebhookEvent.objects.count() == 1
    assert_woken_once(run, sent_tasks)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
def test_two_copies_arriving_together_have_one_effect(
    webhook_secret, signed, event_payload, run, sent_tasks
):
    body, headers = signed(event_payload("resp_1"))
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=10)
            codes.append(post(Client(), body, headers).status_code)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200, 200]
    assert WebhookEvent.objects.count() == 1
    assert_woken_once(run, sent_tasks)


def forged(signed, event_payload):
    body, headers = signed(event_payload("resp_1"))
    return body, {**headers, "webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}


def forged_with_a_non_ascii_signature(signed, event_payload):
    """A server reads header bytes as Latin-1; the SDK's string comparison raised TypeError."""
    body, headers = signed(event_payload("resp_1"))
    return body, {**headers, "webhook-signature": "v1,\xe9"}


def wrong_secret(signed, event_payload):
    return signed(event_payload("resp_1"), secret="whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")


def stale_timestamp(signed, event_payload):
    return signed(event_payload("resp_1"), ts=int(time.time()) - 3600)


def future_timestamp(signed, event_payload):
    return signed(event_payload("resp_1"), ts=int(time.time()) + 3600)


def replay_with_fresh_id(signed, event_payload):
    body, headers = signed(event_payload("resp_1"), msg_id="wh_original")
    return body, {**headers, "webhook-id": "wh_fresh"}


def tampered_body(signed, event_payload):
    body, headers = signed(event_payload("resp_1"))
    return body.replace(b"resp_1", b"resp_2"), headers


def missing(header: str):
    def build(signed, event_payload):
        body, headers = signed(event_payload("resp_1"))
        return body, {k: v for k, v in headers.items() if k != header}

    build.__name__ = f"missing_{header.replace('-', '_')}"
    return build


def not_json(signed, event_payload):
    return signed(b"this is not json")


def not_an_event(signed, event_payload):
    return signed([1, 2, 3])


def event_without_type(signed, event_payload):
    payload = event_payload("resp_1")
    del payload["type"]
    return signed(payload)


def with_nul_in_a_string(signed, event_payload):
    """PostgreSQL stores no NUL, in ``jsonb`` as in ``text``: this was a 500, retried for days."""
    return signed({**event_payload("resp_1"), "note": "a\x00b"})


def with_a_lone_surrogate(signed, event_payload):
    return signed(json.dumps(event_payload("resp_1"))[:-1].encode() + b', "note": "\\ud800"}')


def with_nan(signed, event_payload):
    return signed(json.dumps({**event_payload("resp_1"), "score": float("nan")}).encode())


def with_a_number_past_a_float(signed, event_payload):
    return signed(json.dumps(event_payload("resp_1"))[:-1].encode() + b', "score": 1e400}')


def terminal_event_without_its_object(signed, event_payload):
    payload = event_payload("resp_1")
    del payload["data"]["id"]
    return signed(payload)


def webhook_id_too_long(signed, event_payload):
    return signed(event_payload("resp_1"), msg_id="wh_" + "x" * 200)


def webhook_id_empty(signed, event_payload):
    body = json.dumps(event_payload("resp_1")).encode()
    return body, sign(body, WEBHOOK_SECRET, "", int(time.time()))


BAD = [
    forged,
    forged_with_a_non_ascii_signature,
    wrong_secret,
    stale_timestamp,
    future_timestamp,
    replay_with_fresh_id,
    tampered_body,
    missing("webhook-id"),
    missing("webhook-timestamp"),
    missing("webhook-signature"),
    not_json,
    not_an_event,
    event_without_type,
    with_nul_in_a_string,
    with_a_lone_surrogate,
    with_nan,
    with_a_number_past_a_float,
    terminal_event_without_its_object,
    webhook_id_too_long,
    webhook_id_empty,
]


@pytest.mark.parametrize("build", BAD, ids=[b.__name__ for b in BAD])
def test_a_bad_request_gets_400_and_touches_nothing(
    build, client, webhook_secret, signed, event_payload, run, sent_tasks
):
    body, headers = build(signed, event_payload)
    response = post(client, body, headers)
    assert response.status_code == 400
    assert response.json()["error"]
    assert WebhookEvent.objects.count() == 0
    assert_not_woken(run, sent_tasks)


def test_a_body_larger_than_the_server_accepts_is_a_json_413(
    client, settings, webhook_secret, signed, event_payload, run, sent_tasks
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body, headers = signed({**event_payload("resp_1"), "padding": "x" * 2000})

    response = post(client, body, headers)

    assert response.status_code == 413
    assert "larger than this server accepts" in response.json()["error"]
    assert WebhookEvent.objects.count() == 0
    assert_not_woken(run, sent_tasks)


def test_only_post_is_allowed(client, webhook_secret):
    response = client.get(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "not allowed" in response.json()["error"]


def test_without_a_configured_secret_we_answer_500_so_openai_retries(
    client, settings, signed, event_payload, run, sent_tasks
):
    settings.OPENAI_WEBHOOK_SECRET = ""
    body, headers = signed(event_payload("resp_1"))
    response = post(client, body, headers)
    assert response.status_code == 500
    assert "secret" in response.json()["error"]
    assert WebhookEvent.objects.count() == 0
    assert_not_woken(run, sent_tasks)


def test_unknown_event_types_are_stored_and_answered_200(
    client, webhook_secret, signed, event_payload, run, sent_tasks
):
    body, headers = signed(event_payload("ftjob_1", "fine_tuning.job.succeeded"))
    response = post(client, body, headers)
    assert response.status_code == 200
    assert WebhookEvent.objects.get().outcome == "ignored"
    assert_not_woken(run, sent_tasks)


def test_events_for_responses_we_do_not_know_are_kept_and_marked(
    client, webhook_secret, signed, event_payload, run, sent_tasks
):
    body, headers = signed(event_payload("resp_someone_elses"))
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.json()["outcome"] == "unknown_object"
    assert WebhookEvent.objects.get().outcome == "unknown_object"
    assert_not_woken(run, sent_tasks)


def test_an_event_for_a_finished_run_is_stale(
    client, webhook_secret, signed, event_payload, run, sent_tasks
):
    Run.objects.filter(pk=run.pk).update(status="completed")
    body, headers = signed(event_payload("resp_1"))
    assert post(client, body, headers).json()["outcome"] == "stale"
    assert_not_woken(run, sent_tasks)


def test_an_event_that_beats_the_remote_id_is_applied_when_the_id_is_saved(
    client, webhook_secret, signed, event_payload, run_row, sent_tasks
):
    from runs.engine.events import apply_waiting

    run = run_row("pending")
    body, headers = signed(event_payload("resp_early"))
    assert post(client, body, headers).json()["outcome"] == "unknown_object"
    assert_not_woken(run, sent_tasks)

    Run.objects.filter(pk=run.pk).update(remote_id="resp_early", status="queued")
    assert apply_waiting(run.pk, "resp_early") == 1
    assert apply_waiting(run.pk, "resp_early") == 0  # once only
    assert WebhookEvent.objects.get().outcome == "applied"
    assert_woken_once(run, sent_tasks)


def test_a_copy_of_an_event_that_beat_the_remote_id_looks_again(
    client, webhook_secret, signed, event_payload, run_row, sent_tasks
):
    """The first copy was stored ``unknown_object`` and the start's own look came before that
    insert committed (or the web process died before its second look): a redelivery finds the
    run now and wakes it, instead of answering "duplicate" and leaving it to the safety net."""
    run = run_row("pending")
    body, headers = signed(event_payload("resp_early"))
    assert post(client, body, headers).json()["outcome"] == "unknown_object"
    Run.objects.filter(pk=run.pk).update(remote_id="resp_early", status="queued")

    again = post(client, body, headers).json()
    assert again == {"status": "duplicate", "outcome": "applied"}
    assert_woken_once(run, sent_tasks)
    assert post(client, body, headers).json() == {"status": "duplicate", "outcome": "applied"}
    assert_woken_once(run, sent_tasks)


def test_an_early_event_whose_wake_fails_leaves_the_run_due_not_the_start_failed(
    webhook_secret, signed, event_payload, run_row, sent_tasks, monkeypatch, client, caplog
):
    """``apply_waiting`` runs after a start or a submit saved the run, with work still to do
    after it: a broker that refuses the wake is logged, not raised, and the run is left due
    now, for the sweep."""
    from runs.engine.events import apply_waiting

    run = run_row("pending")
    body, headers = signed(event_payload("resp_early"))
    post(client, body, headers)
    Run.objects.filter(pk=run.pk).update(remote_id="resp_early", status="queued")

    def broker_down(name: str, *args: object, **options: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(enqueue, "send", broker_down)
    assert apply_waiting(run.pk, "resp_early") == 0
    assert f"run {run.pk}: early webhook not applied" in caplog.text
    run.refresh_from_db()
    assert run.next_poll_at is not None and run.next_poll_at <= timezone.now()


def test_when_the_wake_cannot_be_sent_we_answer_500_and_a_redelivery_retries(
    client, webhook_secret, signed, event_payload, run, sent_tasks, monkeypatch
):
    broker = enqueue.send  # the sent_tasks stand-in

    def broker_down(name: str, *args: object, **options: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(enqueue, "send", broker_down)
    body, headers = signed(event_payload("resp_1"))
    assert post(client, body, headers).status_code == 500
    assert WebhookEvent.objects.get().outcome == "received"  # so the redelivery processes it
    run.refresh_from_db()
    assert run.webhook_events == 0  # counted only with a poll actually enqueued
    assert sent_tasks == []
    burnt = run.poll_generation  # the failed wake took a ticket whose poll was never sent

    monkeypatch.setattr(enqueue, "send", broker)
    again = post(client, body, headers)
    assert again.status_code == 200
    assert again.json()["outcome"] == "applied"
    assert_woken_once(run, sent_tasks, ticket=burnt + 1)


@pytest.mark.parametrize("failure", ["OperationalError", "InterfaceError"])
def test_a_database_that_fails_the_insert_is_a_500_with_a_message_so_openai_delivers_again(
    failure, client, webhook_secret, signed, event_payload, run, sent_tasks, monkeypatch, caplog
):
    from django import db

    from runs.engine import event_rows

    def database_down(*args: object, **kwargs: object) -> None:
        raise getattr(db, failure)("the database system is shutting down")

    body, headers = signed(event_payload("resp_1"))
    with monkeypatch.context() as patched:
        patched.setattr(event_rows, "insert_settled", database_down)
        response = post(client, body, headers)

    assert response.status_code == 500
    assert response.json() == {
        "error": "could not record the event now; it will be recorded on redelivery"
    }
    assert f"webhook {headers['webhook-id']}: could not record the event" in caplog.text
    assert sent_tasks == []

    # The database is back: the redelivery is recorded and wakes the run.
    assert post(client, body, headers).json()["outcome"] == "applied"
    assert sent_tasks == [("runs.poll_run", (run.pk, 1), None)]


def test_a_wake_that_fails_after_the_run_is_found_at_the_second_look_is_retried_too(
    client, webhook_secret, signed, event_payload, run_row, sent_tasks, monkeypatch
):
    """The start saved the run's remote id between the event's insert (``unknown_object``) and
    the view's second look; the wake then failed: the redelivery must process it, not answer
    "duplicate"."""
    from runs.engine import events

    run = run_row("queued", remote_id="")
    broker, look = enqueue.send, events._run_for

    def saved_meanwhile(object_id: str):
        Run.objects.filter(pk=run.pk).update(remote_id="resp_1")
        return look(object_id)

    def broker_down(name: str, *args: object, **options: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(events, "_run_for", saved_meanwhile)
    monkeypatch.setattr(enqueue, "send", broker_down)
    body, headers = signed(event_payload("resp_1"))
    assert post(client, body, headers).status_code == 500
    assert WebhookEvent.objects.get().outcome == "received"

    monkeypatch.setattr(enqueue, "send", broker)
    again = post(client, body, headers)
    assert again.json() == {"status": "ok", "outcome": "applied"}
    run.refresh_from_db()
    assert run.webhook_events == 1


# --- secrets: rotation with fallbacks ------------------------------------------------------------

OLD = "whsec_" + "b2xkLXNlY3JldC1iZWZvcmUtdGhlLXJvdGF0aW9uLTAx"  # base64 of 33 test-only bytes
NEW = "whsec_" + "bmV3LXNlY3JldC1hZnRlci10aGUtcm90YXRpb24tMDEy"
OTHER = "whsec_" + "YW5vdGhlci1wcm9qZWN0cy1zZWNyZXQtbm90LW91cnMx"


@pytest.fixture
def rotating(settings) -> None:
    """Mid-rotation: the new secret is current, the old one a fallback (a comma-separated string,
    as the environment gives it, with a blank entry and spaces that must not matter)."""
    settings.OPENAI_WEBHOOK_SECRET = NEW
    settings.OPENAI_WEBHOOK_SECRET_FALLBACKS = f" {OLD} , ,"


@pytest.mark.parametrize("secret", [NEW, OLD], ids=["current", "fallback"])
def test_during_a_rotation_both_secrets_verify(
    secret, rotating, client, signed, event_payload, run, sent_tasks
):
    body, headers = signed(event_payload("resp_1"), secret=secret)
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "outcome": "applied"}
    assert_woken_once(run, sent_tasks)


def test_during_a_rotation_a_third_secret_does_not_verify(
    rotating, client, signed, event_payload, run, sent_tasks
):
    body, headers = signed(event_payload("resp_1"), secret=OTHER)
    response = post(client, body, headers)
    assert response.status_code == 400
    assert "signature" in response.json()["error"]
    assert WebhookEvent.objects.count() == 0
    assert_not_woken(run, sent_tasks)


def test_whitespace_around_a_secret_does_not_matter(
    settings, client, signed, event_payload, run, sent_tasks
):
    """A newline at the end of an env file's line is not part of the secret."""
    settings.OPENAI_WEBHOOK_SECRET = NEW + "\n"
    body, headers = signed(event_payload("resp_1"), secret=NEW)
    assert post(client, body, headers).status_code == 200
    assert check_webhook_secrets() == []


def test_fallbacks_may_also_be_a_list_in_settings(
    settings, client, signed, event_payload, run, sent_tasks
):
    settings.OPENAI_WEBHOOK_SECRET = NEW
    settings.OPENAI_WEBHOOK_SECRET_FALLBACKS = [OTHER, OLD]
    body, headers = signed(event_payload("resp_1"), secret=OLD)
    assert post(client, body, headers).status_code == 200
    assert_woken_once(run, sent_tasks)


def test_a_stale_delivery_is_refused_whatever_secret_signed_it(
    rotating, client, signed, event_payload, run, sent_tasks
):
    body, headers = signed(event_payload("resp_1"), secret=OLD, ts=int(time.time()) - 3600)
    response = post(client, body, headers)
    assert response.status_code == 400
    assert "too old" in response.json()["error"]
    assert_not_woken(run, sent_tasks)


# --- secrets: a malformed one is our 500, and a system check ------------------------------------

MALFORMED = {
    "no_prefix": "c2VjcmV0LWZvci10ZXN0cy1vbmx5LTAxMjM0NTY3ODk=",
    "not_base64": "whsec_not*base64!",
    "truncated": "whsec_c2VjcmV0LWZvci10ZXN0cy1vbmx5LTAxMjM0NTY3OD",
    "nothing_after_prefix": "whsec_",
}


@pytest.mark.parametrize("where", ["current", "fallback"])
@pytest.mark.parametrize("bad", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_secret_answers_500_logs_once_and_writes_nothing(
    bad, where, settings, client, signed, event_payload, run, sent_tasks, caplog
):
    """Even a delivery that the good secret verifies is refused with a 500 (OpenAI retries it):
    with a broken fallback, a 400 for a delivery signed with the old secret would lose it."""
    settings.OPENAI_WEBHOOK_SECRET = bad if where == "current" else NEW
    settings.OPENAI_WEBHOOK_SECRET_FALLBACKS = [bad] if where == "fallback" else []
    body, headers = signed(event_payload("resp_1"), secret=NEW)
    with caplog.at_level(logging.ERROR, logger="runs.intake.views"):
        response = post(client, body, headers)
    assert response.status_code == 500
    assert "misconfigured" in response.json()["error"]
    assert WebhookEvent.objects.count() == 0
    assert_not_woken(run, sent_tasks)
    (record,) = [r for r in caplog.records if r.name == "runs.intake.views"]
    setting = (
        "OPENAI_WEBHOOK_SECRET" if where == "current" else "OPENAI_WEBHOOK_SECRET_FALLBACKS[0]"
    )
    assert setting in record.getMessage()
    material = bad.strip().removeprefix("whsec_")  # the secret part, if there is any
    assert not material or material not in caplog.text + response.content.decode()


def test_the_system_check_reports_a_malformed_secret_by_name_never_by_value(settings):
    settings.OPENAI_WEBHOOK_SECRET = MALFORMED["no_prefix"]
    settings.OPENAI_WEBHOOK_SECRET_FALLBACKS = f"{OLD},{MALFORMED['truncated']}"
    messages = check_webhook_secrets()
    assert [m.id for m in messages] == ["runs.E101", "runs.E101"]
    assert "OPENAI_WEBHOOK_SECRET does not start with 'whsec_'" in messages[0].msg
    assert "OPENAI_WEBHOOK_SECRET_FALLBACKS[1] is not valid base64" in messages[1].msg
    with pytest.raises(SystemCheckError) as failed:
        call_command("check")
    text = str(failed.value)
    assert "runs.E101" in text
    assert MALFORMED["no_prefix"] not in text and MALFORMED["truncated"] not in text


def test_the_system_check_is_silent_for_well_formed_secrets(settings, rotating):
    assert check_webhook_secrets() == []
    settings.OPENAI_WEBHOOK_SECRET = ""
    settings.OPENAI_WEBHOOK_SECRET_FALLBACKS = ""
    assert check_webhook_secrets() == []  # no secret at all: fine for the poll strategy


def test_the_webhook_strategy_without_a_secret_is_a_warning(settings):
    settings.RUNS_STRATEGY = "webhook"
    settings.OPENAI_WEBHOOK_SECRET = ""
    assert [m.id for m in check_webhook_secrets()] == ["runs.W101"]


def test_fallbacks_of_the_wrong_type_are_reported(settings, webhook_secret):
    settings.OPENAI_WEBHOOK_SECRET_FALLBACKS = 42
    (message,) = check_webhook_secrets()
    assert message.id == "runs.E101"
    assert "comma-separated string or a list" in message.msg


# --- what a delivery costs (issue 13: one insert-or-ignore plus one wake) -------------------------


def statements(queries) -> list[str]:
    """The first word of each statement: what the database was asked to do, without the
    ``SAVEPOINT`` and ``RELEASE`` of a transaction inside the test's own (``bookkeeping``)."""
    words = [q["sql"].split(None, 1)[0].upper() for q in queries.captured_queries]
    return [w for w in words if w not in ("SAVEPOINT", "RELEASE")]


def bookkeeping() -> int:
    """Where the insert cannot take the wake's ticket itself (SQLite), it runs in a transaction
    with the ticket's UPDATE: here a savepoint and its release, on a real connection a BEGIN and
    a COMMIT (the COMMIT the two statements' autocommits used to make)."""
    from django.db import connection

    return 0 if connection.vendor == "postgresql" else 2


def storing() -> str:
    """The statement that stores a delivery: the insert, inside a ``WITH`` on PostgreSQL."""
    from django.db import connection

    return "WITH" if connection.vendor == "postgresql" else "INSERT"


@pytest.fixture
def insert_then_wake(monkeypatch) -> None:
    """Store deliveries as on SQLite, which has no data-modifying ``WITH``: the insert alone, then
    the wake's UPDATE (``event_rows.wakes_in_insert``)."""
    from runs.engine import event_rows

    monkeypatch.setattr(event_rows, "wakes_in_insert", lambda about: False)


@pytest.mark.usefixtures("on_postgres")
def test_a_delivery_costs_one_statement_then_the_enqueue(
    client, webhook_secret, signed, event_payload, run, sent_tasks, django_assert_num_queries
):
    body, headers = signed(event_payload("resp_1"))
    with django_assert_num_queries(1) as queries:
        assert post(client, body, headers).json() == {"status": "ok", "outcome": "applied"}
    # One statement, one commit: the insert finds the run and settles the event, and the same
    # statement takes the run's fresh ticket and counts the event, for the poll then enqueued.
    assert statements(queries) == ["WITH"]
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.run_id, event.processed_at is not None) == (
        "applied",
        run.pk,
        True,
    )
    assert_woken_once(run, sent_tasks)


@pytest.mark.usefixtures("insert_then_wake")
def test_without_a_data_modifying_with_a_delivery_costs_an_insert_and_one_wake(
    client, webhook_secret, signed, event_payload, run, sent_tasks, django_assert_num_queries
):
    body, headers = signed(event_payload("resp_1"))
    with django_assert_num_queries(2 + 2) as queries:
        assert post(client, body, headers).json() == {"status": "ok", "outcome": "applied"}
    # The insert settles the event; the UPDATE takes a fresh ticket, counts the event and
    # returns the ticket for the poll it enqueues. Both in one transaction (+2: a savepoint
    # inside the test's own): a crash between them must not leave the event applied, no wake.
    assert statements(queries) == ["INSERT", "UPDATE"]
    assert WebhookEvent.objects.get().outcome == "applied"
    assert_woken_once(run, sent_tasks)


def test_a_duplicate_costs_the_ignored_insert_and_one_read_and_writes_nothing(
    client, webhook_secret, signed, event_payload, run, sent_tasks, django_assert_num_queries
):
    body, headers = signed(event_payload("resp_1"))
    post(client, body, headers)
    stored = list(WebhookEvent.objects.values())
    run_row_before = Run.objects.filter(pk=run.pk).values().get()
    with django_assert_num_queries(2 + bookkeeping()) as queries:
        assert post(client, body, headers).json() == {"status": "duplicate", "outcome": "applied"}
    assert statements(queries) == [storing(), "SELECT"]
    assert list(WebhookEvent.objects.values()) == stored
    assert Run.objects.filter(pk=run.pk).values().get() == run_row_before
    assert len(sent_tasks) == 1  # the first delivery's wake only


def test_an_event_for_an_unknown_object_is_kept_at_the_cost_of_one_more_look(
    client, webhook_secret, signed, event_payload, run, sent_tasks, django_assert_num_queries
):
    body, headers = signed(event_payload("resp_not_ours"))
    with django_assert_num_queries(2 + bookkeeping()) as queries:
        assert post(client, body, headers).json()["outcome"] == "unknown_object"
    # The second look closes the race with a start saving this remote id meanwhile.
    assert statements(queries) == [storing(), "SELECT"]
    assert WebhookEvent.objects.get().outcome == "unknown_object"
    assert_not_woken(run, sent_tasks)


@pytest.mark.parametrize("event_type", ["fine_tuning.job.succeeded", "response.created"])
def test_an_event_we_do_not_act_on_costs_the_insert_alone(
    event_type,
    client,
    webhook_secret,
    signed,
    event_payload,
    run,
    sent_tasks,
    django_assert_num_queries,
):
    body, headers = signed(event_payload("resp_1", event_type))
    with django_assert_num_queries(1 + bookkeeping()):
        assert post(client, body, headers).json()["outcome"] == "ignored"
    assert WebhookEvent.objects.get().run_id is None
    assert_not_woken(run, sent_tasks)


@pytest.mark.usefixtures("insert_then_wake")
def test_a_run_that_ends_between_the_insert_and_the_wake_makes_the_event_stale(
    client, webhook_secret, signed, event_payload, run, sent_tasks, monkeypatch
):
    from runs.engine import events, writer

    real_ticket = writer.wake_ticket

    def ended_meanwhile(run_id: int, webhook_events: int = 0) -> int | None:
        Run.objects.filter(pk=run_id).update(status="completed")
        return real_ticket(run_id, webhook_events)

    monkeypatch.setattr(events.writer, "wake_ticket", ended_meanwhile)
    body, headers = signed(event_payload("resp_1"))
    assert post(client, body, headers).json()["outcome"] == "stale"
    assert WebhookEvent.objects.get().outcome == "stale"
    run.refresh_from_db()
    assert (run.webhook_events, sent_tasks) == (0, [])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
def test_a_run_that_ends_while_its_event_goes_in_takes_no_ticket_and_the_event_is_stale(
    webhook_secret, signed, event_payload, run, sent_tasks
):
    """The statement's lookup sees the run active; its UPDATE waits for the row, which another
    transaction is ending, and then finds it ended: no ticket, no poll, the event ``stale``."""
    from django.db import connection, transaction

    body, headers = signed(event_payload("resp_1"))
    holding, done, seen_waiting = threading.Event(), threading.Event(), threading.Event()
    # Another session of this database waiting for a lock: the delivery, waiting for the row.
    waiting = """
        SELECT 1 FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND wait_event_type = 'Lock'
    """

    def end_the_run_once_the_delivery_waits() -> None:
        try:
            with transaction.atomic():
                Run.objects.filter(pk=run.pk).update(status="completed")
                holding.set()
                with connection.cursor() as cursor:
                    while not done.wait(0.01):
                        cursor.execute(waiting)
                        if cursor.fetchone():
                            seen_waiting.set()
                            break
        finally:
            close_old_connections()

    ender = threading.Thread(target=end_the_run_once_the_delivery_waits)
    ender.start()
    try:
        assert holding.wait(10)
        answer = post(Client(), body, headers).json()
    finally:
        done.set()
        ender.join()
    assert seen_waiting.is_set()  # the statement's UPDATE did wait for the row
    assert answer == {"status": "ok", "outcome": "stale"}
    assert WebhookEvent.objects.get().outcome == "stale"
    run.refresh_from_db()
    assert (run.status, run.webhook_events, run.poll_generation, sent_tasks) == (
        "completed",
        0,
        0,
        [],
    )


def test_a_redelivery_whose_run_ends_before_its_wake_makes_the_event_stale_too(
    client, webhook_secret, signed, event_payload, run, sent_tasks, monkeypatch
):
    from runs.engine import events, writer

    real_ticket, broker = writer.wake_ticket, enqueue.send

    def broker_down(name: str, *args: object, **options: object) -> None:
        raise ConnectionError("broker down")

    def ended_meanwhile(run_id: int, webhook_events: int = 0) -> int | None:
        Run.objects.filter(pk=run_id).update(status="completed")
        return real_ticket(run_id, webhook_events)

    body, headers = signed(event_payload("resp_1"))
    monkeypatch.setattr(enqueue, "send", broker_down)
    assert post(client, body, headers).status_code == 500  # left "received" for the redelivery
    monkeypatch.setattr(enqueue, "send", broker)
    monkeypatch.setattr(events.writer, "wake_ticket", ended_meanwhile)

    assert post(client, body, headers).json()["outcome"] == "stale"
    assert WebhookEvent.objects.get().outcome == "stale"
    run.refresh_from_db()
    assert (run.webhook_events, sent_tasks) == (0, [])


def test_a_tool_rounds_webhook_that_beats_its_new_response_id_is_applied_once_it_is_saved(
    make_run, webhook_secret, signed, event_payload, sent_tasks, monkeypatch
):
    """On Responses a submit of tool outputs starts a new response. Its ``response.completed``
    can arrive before the new id is saved (``unknown_object``); saving the id applies it, as a
    start does, instead of leaving the run to its safety net (up to a whole window late)."""
    from runs.backends.base import RemoteState
    from runs.backends.responses import ResponsesBackend
    from runs.engine import tool_round
    from runs.models import ToolCall

    waiting = make_run("requires_action", remote_id="resp_1", strategy="webhook")
    ToolCall.objects.create(
        run=waiting, call_id="call_1", name="add", output="5", state=ToolCall.State.SUCCEEDED
    )
    answered: list[dict] = []

    def submit(self, run, outputs):
        answered.append(post(Client(), *signed(event_payload("resp_2"))).json())
        return RemoteState(remote_id="resp_2", status="queued", remote_status="queued")

    monkeypatch.setattr(ResponsesBackend, "submit_tool_outputs", submit)

    tool_round.resume(waiting.pk)

    assert answered == [{"status": "ok", "outcome": "unknown_object"}]
    waiting.refresh_from_db()
    assert (waiting.remote_id, waiting.webhook_events) == ("resp_2", 1)
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.run_id) == ("applied", waiting.pk)
    polls = [args for name, args, countdown in sent_tasks if name == "runs.poll_run"]
    assert (waiting.pk, waiting.poll_generation) in polls  # the wake's poll, due now


@pytest.mark.parametrize("about", ["run, stored the SQLite way", "batch"])
def test_a_process_that_dies_after_storing_a_delivery_leaves_its_wake_to_the_sweep(
    about, settings, webhook_secret, signed, event_payload, run_row, sent_tasks, monkeypatch
):
    """Where the insert cannot take the ticket itself (SQLite; ``batch.*`` events everywhere),
    the ticket is taken in the insert's transaction. A web process killed before the enqueue
    leaves the event ``applied`` (its redelivery is a duplicate) and the object due now, so the
    sweep polls it a grace later instead of its safety net (up to hours)."""
    from datetime import timedelta

    from django.utils import timezone

    from runs.engine import event_rows
    from runs.engine.sweep import sweep
    from runs.intake import recording
    from runs.models import Batch

    later = timezone.now() + timedelta(hours=2)
    if about == "batch":
        target = Batch.objects.create(
            model="m", strategy="webhook", status="in_progress", remote_id="b_1", next_poll_at=later
        )
        payload, task = {"type": "batch.completed", "data": {"id": "b_1"}}, "runs.poll_batch"
    else:
        monkeypatch.setattr(event_rows, "wakes_in_insert", lambda about: False)
        target = run_row("in_progress", remote_id="resp_1", strategy="webhook", next_poll_at=later)
        payload, task = event_payload("resp_1"), "runs.poll_run"
    body, headers = signed(payload)

    recording.record(headers["webhook-id"], json.loads(body))  # then the process dies
    assert post(Client(), body, headers).json()["status"] == "duplicate"  # OpenAI's retry

    target.refresh_from_db()
    assert (target.poll_generation, target.next_poll_at <= timezone.now()) == (1, True)
    assert sent_tasks == []
    sweep(timezone.now() + timedelta(seconds=settings.RUNS_SWEEP_GRACE_S + 1))
    assert [(name, args[0]) for name, args, _ in sent_tasks] == [(task, target.pk)]
