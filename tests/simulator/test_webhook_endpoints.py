"""``/v1/webhook_endpoints`` through the SDK's ``client.webhooks``: shapes, deliveries, rotation.

The SDK 3.57 types are the reference (the vendored OpenAPI file has no such paths), so every
answer is validated strictly with the SDK's own pydantic models.
"""

from __future__ import annotations

import base64
import json

import openai
import pytest
from openai import OpenAI
from openai.types.webhooks import (
    DeletedWebhookEndpoint,
    WebhookEndpoint,
    WebhookEndpointTestResult,
    WebhookEndpointWithSecret,
)

from runs_simulator.testing import RunningSimulator

from .helpers import strict, wait_for
from .receiver import Receiver

RESPONSE_EVENTS = [
    "response.completed",
    "response.failed",
    "response.cancelled",
    "response.incomplete",
]


def _create(client: OpenAI, url: str, events: list[str] | None = None) -> WebhookEndpointWithSecret:
    return client.webhooks.create(
        name="runs",
        url=url,
        event_types=events or RESPONSE_EVENTS,  # type: ignore[arg-type]
    )


def _background(client: OpenAI, outcome: str = "completed") -> str:
    return client.responses.create(
        model="gpt-4o",
        input="hook",
        background=True,
        metadata={"sim_duration_s": "0.1", "sim_outcome": outcome},
    ).id


def test_create_returns_the_secret_once_and_reads_show_only_a_hint(client: OpenAI) -> None:
    created = client.webhooks.with_raw_response.create(
        name="runs", url="https://example.test/hook", event_types=RESPONSE_EVENTS
    )
    endpoint = strict(WebhookEndpointWithSecret, json.loads(created.text))
    assert endpoint.id.startswith("we_") and endpoint.event_types == RESPONSE_EVENTS
    assert endpoint.signing_secret.startswith("whsec_")
    assert len(base64.b64decode(endpoint.signing_secret[6:], validate=True)) == 32
    assert endpoint.signing_secret[-4:] in (endpoint.signing_secret_hint or "")

    read = json.loads(client.webhooks.with_raw_response.retrieve(endpoint.id).text)
    assert "signing_secret" not in read
    assert strict(WebhookEndpoint, read).signing_secret_hint == endpoint.signing_secret_hint
    assert [e.id for e in client.webhooks.list()] == [endpoint.id]


def test_list_is_newest_first_and_pages(client: OpenAI) -> None:
    ids = [_create(client, f"https://example.test/{i}").id for i in range(3)]
    first = client.webhooks.list(limit=2)
    assert [e.id for e in first.data] == ids[::-1][:2] and first.has_more
    assert [e.id for e in client.webhooks.list(limit=2)] == ids[::-1]  # auto-paginated


def test_update_and_delete(client: OpenAI) -> None:
    endpoint = _create(client, "https://example.test/hook")
    updated = client.webhooks.update(endpoint.id, name="renamed", event_types=["batch.completed"])
    assert (updated.name, updated.event_types) == ("renamed", ["batch.completed"])
    deleted = client.webhooks.with_raw_response.delete(endpoint.id)
    assert strict(DeletedWebhookEndpoint, json.loads(deleted.text)).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.webhooks.retrieve(endpoint.id)


BAD_CREATES = {
    "http_to_a_public_host": {"url": "http://example.test/hook"},
    "not_a_url": {"url": "hook"},
    "unknown_event": {"event_types": ["response.started"]},
    "no_events": {"event_types": []},
    "no_name": {"name": ""},
}


@pytest.mark.parametrize("change", BAD_CREATES.values(), ids=BAD_CREATES.keys())
def test_a_bad_create_is_a_400_and_stores_nothing(client: OpenAI, change: dict) -> None:
    body = {"name": "runs", "url": "https://example.test/hook", "event_types": RESPONSE_EVENTS}
    with pytest.raises(openai.BadRequestError) as refused:
        client.webhooks.create(**{**body, **change})
    assert str(refused.value.param).split("[")[0] in change  # names the field
    assert list(client.webhooks.list()) == []


def test_a_registered_endpoint_receives_its_events_signed_with_its_secret(
    client: OpenAI, sim: RunningSimulator
) -> None:
    """Next to the /_sim/config target, which still receives everything with its own secret."""
    config_secret = "whsec_" + base64.b64encode(b"the-config-target-secret-0123456").decode()
    with Receiver() as registered, Receiver() as only_failed, Receiver() as configured:
        endpoint = _create(client, registered.url)
        _create(client, only_failed.url, ["response.failed"])
        sim.configure(webhook_url=configured.url, webhook_secret=config_secret)
        response_id = _background(client)
        (delivery,) = wait_for(registered.received, lambda got: len(got) == 1)
        event = client.webhooks.unwrap(
            delivery.body, delivery.headers, secret=endpoint.signing_secret
        )
        assert (event.type, event.data.id) == ("response.completed", response_id)
        (other,) = wait_for(configured.received, lambda got: len(got) == 1)
        client.webhooks.unwrap(other.body, other.headers, secret=config_secret)
        assert other.headers["webhook-id"] != delivery.headers["webhook-id"]
        assert only_failed.received() == []


def test_after_a_rotation_new_events_use_the_new_secret_and_retries_keep_the_old(
    client: OpenAI, sim: RunningSimulator
) -> None:
    """Why a receiver needs OPENAI_WEBHOOK_SECRET_FALLBACKS: a delivery signed before the rotation
    is retried, still signed with the old secret, after the new one is out."""
    sim.configure(webhook_retry_base_s=0.3)
    with Receiver(statuses=[500]) as receiver:
        endpoint = _create(client, receiver.url)
        old = endpoint.signing_secret
        first_id = _background(client)
        wait_for(receiver.received, lambda got: len(got) == 1)
        rotated = client.webhooks.with_raw_response.rotate_secret(
            endpoint.id, keep_old_secret_active_for_24_hours=True
        )
        new = strict(WebhookEndpointWithSecret, json.loads(rotated.text)).signing_secret
        assert new != old
        retry = wait_for(receiver.received, lambda got: len(got) == 2)[1]
        assert client.webhooks.unwrap(retry.body, retry.headers, secret=old).data.id == first_id
        with pytest.raises(openai.InvalidWebhookSignatureError):
            client.webhooks.verify_signature(retry.body, retry.headers, secret=new)

        second_id = _background(client)
        fresh = wait_for(receiver.received, lambda got: len(got) == 3)[2]
        assert client.webhooks.unwrap(fresh.body, fresh.headers, secret=new).data.id == second_id
        with pytest.raises(openai.InvalidWebhookSignatureError):
            client.webhooks.verify_signature(fresh.body, fresh.headers, secret=old)


def test_the_test_call_delivers_a_signed_sample_and_reports_the_status(
    client: OpenAI,
) -> None:
    with Receiver(statuses=[418]) as receiver:
        endpoint = _create(client, receiver.url)
        answer = client.webhooks.with_raw_response.test(endpoint.id, event_type="response.failed")
        result = strict(WebhookEndpointTestResult, json.loads(answer.text))
        assert (result.status_code, result.webhook_endpoint_id) == (418, endpoint.id)
        (delivery,) = receiver.received()  # the call waited for the answer
        event = client.webhooks.unwrap(
            delivery.body, delivery.headers, secret=endpoint.signing_secret
        )
        assert event.type == "response.failed"
        assert json.loads(delivery.body)["data"]["id"].startswith("resp_")


def test_the_test_call_to_an_unreachable_endpoint_is_a_400(client: OpenAI) -> None:
    endpoint = _create(client, "http://127.0.0.1:9/nothing-listens-here")
    with pytest.raises(openai.BadRequestError, match="Could not deliver the test event"):
        client.webhooks.test(endpoint.id, event_type="response.completed")


def test_event_types_are_the_sdks(client: OpenAI) -> None:
    listed = client.webhooks.event_types.list().data
    assert set(RESPONSE_EVENTS) | {"batch.completed"} <= set(listed)
