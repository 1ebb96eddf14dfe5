"""The webhook endpoint: verify with the SDK, record once, wake the run, never trust a forgery.

The wake is the real one (``runs.engine.writer.wake``: a fresh poll ticket, the event counted);
only the broker is a stand-in (``sent_tasks``), so each test sees the poll the wake enqueued.
The integration tests in test_webhook_strategy.py run the whole loop with a worker and the
simulator.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import close_old_connections
from django.test import Client

from runs.engine import enqueue
from runs.models import Run, WebhookEvent

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


BAD = [
    forged,
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
    body, headers = signed(event_payload("batch_1", "batch.completed"))
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


def test_when_the_wake_cannot_be_sent_we_answer_500_and_a_redelivery_retries(
    client, webhook_secret, signed, event_payload, run, sent_tasks, monkeypatch
):
    broker = enqueue.send  # the sent_tasks stand-in

    def broker_down(name: str, *args: object, countdown: float | None = None) -> None:
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
