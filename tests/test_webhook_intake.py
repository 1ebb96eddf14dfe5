"""The webhook endpoint: verify with the SDK, record once, wake the run, never trust a forgery.

The wake itself is mocked here (autospec) so these tests read as the contract of the view; the
integration tests in test_webhook_strategy.py run the whole loop with a worker and the simulator.
"""

from __future__ import annotations

import threading
import time
from unittest import mock

import pytest
from django.db import close_old_connections
from django.db.models import F
from django.test import Client

from runs.engine import writer
from runs.models import Run, Thread, WebhookEvent

URL = "/webhooks/openai/"


@pytest.fixture
def wake(monkeypatch):
    """The wake, mocked: it is where the run's webhook counter is kept, so count here too."""

    def counting_wake(run_id, *, ticket=None, webhook_events=0):
        Run.objects.filter(pk=run_id).update(webhook_events=F("webhook_events") + webhook_events)
        return True

    fake = mock.create_autospec(writer.wake, side_effect=counting_wake)
    monkeypatch.setattr(writer, "wake", fake)
    return fake


@pytest.fixture
def run() -> Run:
    thread = Thread.objects.create()
    return Run.objects.create(thread=thread, model="m", status="in_progress", remote_id="resp_1")


def post(client: Client, body: bytes, headers: dict[str, str]):
    return client.post(
        URL,
        body,
        content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
    )


pytestmark = pytest.mark.django_db


def test_a_valid_event_is_recorded_and_wakes_its_run(
    client, webhook_secret, signed, event_payload, run, wake
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
    wake.assert_called_once_with(run.pk, ticket=0, webhook_events=1)
    run.refresh_from_db()
    assert run.webhook_events == 1


def test_a_duplicate_delivery_answers_200_and_does_nothing(
    client, webhook_secret, signed, event_payload, run, wake
):
    body, headers = signed(event_payload("resp_1"))
    assert post(client, body, headers).status_code == 200
    again = post(client, body, headers)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert WebhookEvent.objects.count() == 1
    wake.assert_called_once()
    run.refresh_from_db()
    assert run.webhook_events == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
def test_two_copies_arriving_together_have_one_effect(
    webhook_secret, signed, event_payload, run, wake
):
    body, headers = signed(event_payload("resp_1"))
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def deliver() -> None:
        try:
            barrier.wait()
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
    wake.assert_called_once_with(run.pk, ticket=0, webhook_events=1)
    run.refresh_from_db()
    assert run.webhook_events == 1


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
    build, client, webhook_secret, signed, event_payload, run, wake
):
    body, headers = build(signed, event_payload)
    response = post(client, body, headers)
    assert response.status_code == 400
    assert response.json()["error"]
    assert WebhookEvent.objects.count() == 0
    wake.assert_not_called()
    assert Run.objects.get(pk=run.pk).webhook_events == 0


def test_only_post_is_allowed(client, webhook_secret):
    response = client.get(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "not allowed" in response.json()["error"]


def test_without_a_configured_secret_we_answer_500_so_openai_retries(
    client, settings, signed, event_payload, run, wake
):
    settings.OPENAI_WEBHOOK_SECRET = ""
    body, headers = signed(event_payload("resp_1"))
    response = post(client, body, headers)
    assert response.status_code == 500
    assert "secret" in response.json()["error"]
    assert WebhookEvent.objects.count() == 0


def test_unknown_event_types_are_stored_and_answered_200(
    client, webhook_secret, signed, event_payload, run, wake
):
    body, headers = signed(event_payload("batch_1", "batch.completed"))
    response = post(client, body, headers)
    assert response.status_code == 200
    assert WebhookEvent.objects.get().outcome == "ignored"
    wake.assert_not_called()


def test_events_for_responses_we_do_not_know_are_kept_and_marked(
    client, webhook_secret, signed, event_payload, run, wake
):
    body, headers = signed(event_payload("resp_someone_elses"))
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.json()["outcome"] == "unknown_object"
    wake.assert_not_called()


def test_an_event_for_a_finished_run_is_stale(
    client, webhook_secret, signed, event_payload, run, wake
):
    Run.objects.filter(pk=run.pk).update(status="completed")
    body, headers = signed(event_payload("resp_1"))
    assert post(client, body, headers).json()["outcome"] == "stale"
    wake.assert_not_called()


def test_an_event_that_beats_the_remote_id_is_applied_when_the_id_is_saved(
    client, webhook_secret, signed, event_payload, wake
):
    from runs.engine.events import apply_waiting

    run = Run.objects.create(thread=Thread.objects.create(), model="m", status="pending")
    body, headers = signed(event_payload("resp_early"))
    assert post(client, body, headers).json()["outcome"] == "unknown_object"
    wake.assert_not_called()

    Run.objects.filter(pk=run.pk).update(remote_id="resp_early", status="queued")
    assert apply_waiting(run.pk, "resp_early") == 1
    assert apply_waiting(run.pk, "resp_early") == 0  # once only
    wake.assert_called_once_with(run.pk, ticket=0, webhook_events=1)
    assert WebhookEvent.objects.get().outcome == "applied"


def test_when_the_wake_cannot_be_sent_we_answer_500_and_a_redelivery_retries(
    client, webhook_secret, signed, event_payload, run, wake
):
    counting = wake.side_effect
    wake.side_effect = ConnectionError("broker down")
    body, headers = signed(event_payload("resp_1"))
    assert post(client, body, headers).status_code == 500
    assert WebhookEvent.objects.get().outcome == "received"
    assert Run.objects.get(pk=run.pk).webhook_events == 0

    wake.side_effect = counting
    again = post(client, body, headers)
    assert again.status_code == 200
    assert again.json()["outcome"] == "applied"
    assert Run.objects.get(pk=run.pk).webhook_events == 1
