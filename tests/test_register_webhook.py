"""``manage.py register_webhook``, end to end: the real SDK against the simulator's
``/v1/webhook_endpoints``, and the test deliveries verified by our own intake on a live server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.client import get_client, get_create_client
from runs.models import WebhookEvent

SECRET_LINE = re.compile(r"^  OPENAI_WEBHOOK_SECRET=(whsec_\S+)$", re.MULTILINE)


def register_webhook(*args: str) -> str:
    """Run the command; its standard output."""
    out = StringIO()
    call_command("register_webhook", *args, stdout=out)
    return out.getvalue()


def failure(*args: str) -> CommandError:
    """Run the command expecting it to fail; the error (message and exit code)."""
    with pytest.raises(CommandError) as failed:
        register_webhook(*args)
    return failed.value


@pytest.fixture
def openai_is_the_simulator(simulator, settings) -> Iterator[object]:
    """``runs.client`` talks to the session's simulator; endpoints made by a test are deleted
    afterwards (the simulator is shared, and would keep delivering to them)."""
    settings.OPENAI_BASE_URL = simulator.base_url
    get_client.cache_clear()
    get_create_client.cache_clear()
    yield simulator
    webhooks = get_client().webhooks
    for endpoint in webhooks.list():
        webhooks.delete(endpoint.id)
    get_client.cache_clear()
    get_create_client.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_register_then_test_then_rotate_against_our_own_intake(
    openai_is_the_simulator, live_server, settings
):
    url = live_server.url + "/webhooks/openai/"
    out = register_webhook(url)
    secret = SECRET_LINE.search(out).group(1)
    assert out.count(secret) == 1  # printed once, in the line to copy
    endpoint_id = re.search(r"endpoint (we_\w+) for " + re.escape(url), out).group(1)
    assert (
        "events: batch.cancelled, batch.completed, batch.expired, batch.failed, "
        "response.cancelled, response.completed, response.failed, response.incomplete" in out
    )

    settings.OPENAI_WEBHOOK_SECRET = secret
    assert "the endpoint answered 200" in register_webhook("--test", endpoint_id)
    (event,) = WebhookEvent.objects.all()  # our intake verified and recorded the sample
    assert (event.type, event.outcome) == ("response.completed", "unknown_object")

    out = register_webhook("--rotate", endpoint_id)
    new = SECRET_LINE.search(out).group(1)
    assert new != secret and out.count(new) == 1
    assert secret not in out  # the old secret is never echoed, only named
    assert "OPENAI_WEBHOOK_SECRET_FALLBACKS=<the previous OPENAI_WEBHOOK_SECRET>" in out

    # Until the web process has the new secret, deliveries signed with it do not verify...
    refused = failure("--test", endpoint_id)
    assert refused.returncode == 1 and "answered 400" in str(refused)
    # ...and once it has (the old one as a fallback), they do.
    settings.OPENAI_WEBHOOK_SECRET = new
    settings.OPENAI_WEBHOOK_SECRET_FALLBACKS = secret
    assert "the endpoint answered 200" in register_webhook(
        "--test", endpoint_id, "--event-type", "response.failed"
    )
    assert WebhookEvent.objects.count() == 2


def test_the_endpoint_subscribes_to_the_events_the_intake_acts_on(openai_is_the_simulator):
    from runs.engine.events import BATCH_EVENTS, RESPONSE_TERMINAL_EVENTS

    register_webhook("https://runs.example.test/webhooks/openai/", "--name", "prod")
    (endpoint,) = get_client().webhooks.list()
    assert set(endpoint.event_types) == RESPONSE_TERMINAL_EVENTS | BATCH_EVENTS
    assert endpoint.name == "prod"


def test_list_shows_hints_never_secrets(openai_is_the_simulator):
    assert register_webhook("--list") == "No webhook endpoints.\n"
    out = register_webhook("https://runs.example.test/webhooks/openai/")
    secret = SECRET_LINE.search(out).group(1)
    listed = register_webhook("--list")
    assert "https://runs.example.test/webhooks/openai/" in listed
    assert "whsec_****" + secret[-4:] in listed and secret not in listed


def test_an_immediate_rotation_needs_no_fallback(openai_is_the_simulator):
    out = register_webhook("https://runs.example.test/webhooks/openai/")
    endpoint_id = re.search(r"endpoint (we_\w+)", out).group(1)
    rotated = register_webhook("--rotate", endpoint_id, "--immediately")
    assert "no longer valid" in rotated and "FALLBACKS" not in rotated
    assert SECRET_LINE.search(rotated)


BAD_ARGUMENTS = {
    "not_a_url": ["hooks/openai"],
    "ftp": ["ftp://runs.example.test/webhooks/openai/"],
    "plain_http_to_a_public_host": ["http://runs.example.test/webhooks/openai/"],
    "nothing_to_do": [],
    "url_and_an_action": ["https://runs.example.test/hook", "--list"],
    "immediately_without_rotate": ["--list", "--immediately"],
    "empty_endpoint_id": ["--rotate", " "],
}


@pytest.mark.parametrize("args", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_arguments_exit_2_and_create_nothing(openai_is_the_simulator, args):
    error = failure(*args)
    assert error.returncode == 2
    assert list(get_client().webhooks.list()) == []


def test_an_api_refusal_exits_1_with_the_apis_words(openai_is_the_simulator):
    error = failure("--rotate", "we_does_not_exist")
    assert error.returncode == 1
    assert "OpenAI answered 404" in str(error) and "we_does_not_exist" in str(error)


def test_an_unreachable_api_exits_1(settings):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    get_client.cache_clear()
    try:
        error = failure("--list")
    finally:
        get_client.cache_clear()
    assert error.returncode == 1 and "could not reach the OpenAI API" in str(error)
