"""Webhook deliveries, verified by the SDK's own ``client.webhooks.unwrap``."""

from __future__ import annotations

import base64
import json
import time

import pytest
from openai import OpenAI
from openai.types.webhooks import ResponseCompletedWebhookEvent

from runs_simulator.signing import sign
from runs_simulator.testing import RunningSimulator

from .helpers import assert_schema, wait_for
from .receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"simulator-test-secret-0123456789").decode()


def _background(client: OpenAI, outcome: str = "completed", duration: str = "0.1") -> str:
    return client.responses.create(
        model="gpt-4o",
        input="hook",
        background=True,
        metadata={"sim_duration_s": duration, "sim_outcome": outcome},
    ).id


def _webhooks(sim: RunningSimulator) -> dict[str, int]:
    counters: dict[str, int] = sim.stats(objects=False)["webhooks"]
    return counters


def test_delivery_is_accepted_by_sdk_unwrap(client: OpenAI, sim: RunningSimulator) -> None:
    with Receiver() as receiver:
        sim.configure(webhook_url=receiver.url, webhook_secret=SECRET, webhook_delay_s=0.05)
        assert sim.config()["webhook_secret"] == "***"
        response_id = _background(client)
        (delivery,) = wait_for(receiver.received, lambda got: len(got) == 1)
        event = client.webhooks.unwrap(delivery.body, delivery.headers, secret=SECRET)
        assert event.type == "response.completed"
        assert isinstance(event, ResponseCompletedWebhookEvent)
        assert event.data.id == response_id
        assert event.id.startswith("evt_") and delivery.headers["webhook-id"].startswith("wh_")
        payload = json.loads(delivery.body)
        assert payload["object"] == "event"
        assert_schema("WebhookResponseCompleted", payload)
        terminal_at = sim.stats()["objects"][response_id]["terminal_at"]
        assert 0.04 <= delivery.at - terminal_at < 1.0
        counters = _webhooks(sim)
        assert counters["sent"] == 1 and counters["delivered"] == 1 and counters["retries"] == 0


@pytest.mark.parametrize("outcome", ["failed", "incomplete", "cancelled"])
def test_event_type_per_outcome(client: OpenAI, sim: RunningSimulator, outcome: str) -> None:
    with Receiver() as receiver:
        sim.configure(webhook_url=receiver.url, webhook_secret=SECRET)
        response_id = _background(client, outcome)
        (delivery,) = wait_for(receiver.received, lambda got: len(got) == 1)
        event = client.webhooks.unwrap(delivery.body, delivery.headers, secret=SECRET)
        assert event.type == f"response.{outcome}"
        assert json.loads(delivery.body)["data"]["id"] == response_id
        assert_schema(f"WebhookResponse{outcome.capitalize()}", json.loads(delivery.body))


def test_client_cancel_sends_cancelled_instead_of_completed(
    client: OpenAI, sim: RunningSimulator
) -> None:
    with Receiver() as receiver:
        sim.configure(webhook_url=receiver.url, webhook_secret=SECRET)
        response_id = _background(client, "completed", duration="0.4")
        client.responses.cancel(response_id)
        (delivery,) = wait_for(receiver.received, lambda got: len(got) == 1)
        time.sleep(0.5)  # the original completion timer must not fire an event
        assert len(receiver.received()) == 1
        assert json.loads(delivery.body)["type"] == "response.cancelled"


def test_retries_with_backoff_after_500(client: OpenAI, sim: RunningSimulator) -> None:
    with Receiver(statuses=[500, 503]) as receiver:
        sim.configure(
            webhook_url=receiver.url,
            webhook_secret=SECRET,
            webhook_retry_base_s=0.1,
            webhook_retry_factor=2.0,
        )
        _background(client)
        got = wait_for(receiver.received, lambda got: len(got) == 3)
        assert len({d.headers["webhook-id"] for d in got}) == 1
        gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.19
        counters = wait_for(lambda: _webhooks(sim), lambda c: c["delivered"] == 1)
        assert counters["sent"] == 3 and counters["retries"] == 2 and counters["failed"] == 0
        for delivery in got:
            client.webhooks.unwrap(delivery.body, delivery.headers, secret=SECRET)


def test_unreachable_endpoint_gives_up_after_max_attempts(
    client: OpenAI, sim: RunningSimulator
) -> None:
    with Receiver() as receiver:
        dead_url = receiver.url
    sim.configure(
        webhook_url=dead_url,
        webhook_secret=SECRET,
        webhook_retry_base_s=0.05,
        webhook_max_attempts=3,
    )
    _background(client, duration="0.05")
    counters = wait_for(lambda: _webhooks(sim), lambda c: c["failed"] == 1)
    assert counters["sent"] == 3 and counters["retries"] == 2 and counters["delivered"] == 0


def test_duplicates_and_drops_are_counted(client: OpenAI, sim: RunningSimulator) -> None:
    with Receiver() as receiver:
        sim.configure(webhook_url=receiver.url, webhook_secret=SECRET, webhook_duplicate_rate=1.0)
        _background(client, duration="0.05")
        first, second = wait_for(receiver.received, lambda got: len(got) == 2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert first.body == second.body
        sim.configure(webhook_duplicate_rate=0.0, webhook_drop_rate=1.0)
        _background(client, duration="0.05")
        counters = wait_for(lambda: _webhooks(sim), lambda c: c["dropped"] == 1)
        time.sleep(0.2)
        assert len(receiver.received()) == 2
        assert counters["duplicates"] == 1 and counters["events"] == 2


def test_reorder_jitter_delays_within_bound(client: OpenAI, sim: RunningSimulator) -> None:
    with Receiver() as receiver:
        sim.configure(
            webhook_url=receiver.url,
            webhook_secret=SECRET,
            webhook_reorder=0.3,
            webhook_delay_s=0.0,
        )
        ids = [_background(client, duration="0.05") for _ in range(6)]
        got = wait_for(receiver.received, lambda got: len(got) == 6)
        objects = sim.stats()["objects"]
        for delivery in got:
            event = json.loads(delivery.body)
            lateness = delivery.at - objects[event["data"]["id"]]["terminal_at"]
            assert -0.01 <= lateness < 0.6
        assert {json.loads(d.body)["data"]["id"] for d in got} == set(ids)


def test_signing_helper_matches_sdk(client: OpenAI) -> None:
    body = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "type": "response.completed",
            "created_at": int(time.time()),
            "data": {"id": "resp_1"},
        }
    ).encode()
    for secret in (SECRET, "plain-secret"):
        headers = sign(body, secret, "wh_test", int(time.time()))
        event = client.webhooks.unwrap(body, headers, secret=secret)
        assert isinstance(event, ResponseCompletedWebhookEvent) and event.data.id == "resp_1"
