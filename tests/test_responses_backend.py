"""The Responses backend's shortcuts around the SDK's cost, and that none changes a request or an
answer.

- A create's body goes as the SDK's ``extra_body``, skipping its walk of the typed parameters: the
  request must carry what the typed call sends.

- A poll's "not yet" answer (queued or in progress) is read from its JSON, without the SDK's
  ``Response`` model: it must read exactly as the model would.
- A worker warms the SDK before its first task (``Backend.warm``, on Celery's ``worker_init``):
  with no API call, and so the first answers are not the ones that load the SDK.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from openai import OpenAI
from openai.types.responses import Response

from runs.backends import responses
from runs.backends.base import OutgoingMessage, ToolOutput
from runs.backends.responses import (
    NOT_YET,
    ResponsesBackend,
    not_yet,
    response_body,
    to_state,
)
from runs.client import get_client
from runs.models import Run, Thread
from runs.status import RunStatus

ROOT = Path(__file__).resolve().parents[1]

#: A queued answer as the API sends it (the simulator's shape, from the OpenAPI description).
QUEUED: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1_796_000_000,
    "status": "queued",
    "background": True,
    "completed_at": None,
    "conversation": {"id": "conv_1"},
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "model": "gpt-4.1-mini",
    "output": [],
    "parallel_tool_calls": True,
    "reasoning": {"effort": None, "summary": None},
    "service_tier": "default",
    "store": True,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "metadata": {"run_id": "7"},
}

#: An item a response in progress may already hold; it says nothing until the response ends.
PARTIAL_MESSAGE = {
    "type": "message",
    "id": "msg_1",
    "role": "assistant",
    "status": "in_progress",
    "content": [{"type": "output_text", "text": "Half an ans", "annotations": []}],
}
FUNCTION_CALL = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_1",
    "name": "get_weather",
    "arguments": "{}",
    "status": "completed",
}


@pytest.mark.django_db
@pytest.mark.parametrize("with_options", [False, True])
def test_a_create_sends_what_the_typed_call_would(
    make_run, register_tool, monkeypatch, with_options
):
    """Sent as ``extra_body``, a create's body (and a tool round's) reaches the server as the
    SDK's typed ``responses.create(**body)`` would send it, on the creates' client, with the same
    headers and timeout: the walk the shortcut skips changes nothing."""
    run = make_run()
    if with_options:

        def get_weather(city: str) -> str:
            return city

        register_tool(get_weather)
        Run.objects.filter(pk=run.pk).update(
            instructions="Be brief.",
            tools=["get_weather"],
            completion_window="2h",
            service_tier="flex",
            response_format={"name": "answer", "schema": {"type": "object"}, "strict": True},
            reasoning_effort="low",
            max_output_tokens=300,
            prompt_cache_key="key",
            safety_identifier="user-1",
        )
        run.refresh_from_db()
    Thread.objects.filter(pk=run.thread_id).update(remote_id="conv_1")
    run.thread.refresh_from_db()
    sent: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={**QUEUED, "metadata": {"run_id": str(run.pk)}})

    client = OpenAI(
        api_key="sk-test", base_url="http://api.test/v1", max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(server)),
    ).with_options(timeout=42.0)  # fmt: skip
    monkeypatch.setattr(responses, "get_create_client", lambda: client)
    backend = ResponsesBackend()
    message = {"type": "message", "role": "user", "content": "Hello, é"}
    output = {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'}

    for send, items in (
        (lambda: backend.create(run, "conv_1", [OutgoingMessage("user", "Hello, é")]), [message]),
        (
            lambda: backend.submit_tool_outputs(run, [ToolOutput("call_1", '{"ok": true}')]),
            [output],
        ),
    ):
        assert send().status == RunStatus.QUEUED
        client.responses.with_raw_response.create(**response_body(run, "conv_1", items))
        ours, typed = sent[-2:]

        assert json.loads(ours.content) == json.loads(typed.content)
        assert json.loads(ours.content)["input"] == items
        assert _same_everywhere(ours.headers) == _same_everywhere(typed.headers)
        assert ours.url == typed.url and ours.method == typed.method == "POST"
        assert ours.extensions["timeout"] == typed.extensions["timeout"]
    assert ("tools" in json.loads(sent[0].content)) == with_options


def _same_everywhere(headers: httpx.Headers) -> dict[str, str]:
    """A request's headers but the ones the SDK draws for each request."""
    return {k: v for k, v in headers.items() if k not in ("idempotency-key", "content-length")}


@pytest.mark.parametrize("status", NOT_YET)
@pytest.mark.parametrize("output", [[], [PARTIAL_MESSAGE], [FUNCTION_CALL]])
@pytest.mark.parametrize("hint", [None, 250])
def test_a_not_yet_answer_reads_as_the_sdk_model_would(status, output, hint):
    answer = {**QUEUED, "status": status, "output": output}

    fast = not_yet(answer, hint)

    assert fast is not None
    assert fast == to_state(Response.construct(**answer), poll_after_ms=hint)


@pytest.mark.parametrize(
    "change",
    [
        {"status": "completed", "completed_at": 1_796_000_009},
        {"status": "failed", "error": {"code": "server_error", "message": "boom"}},
        {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
        {"status": "cancelled"},
        {"status": "in_progress", "error": {"code": "server_error", "message": "odd"}},
        {"status": "in_progress", "usage": {"input_tokens": 3, "output_tokens": 0}},
        {"status": "in_progress", "error": {}},
        {"status": "something_new"},
        {"status": None},
    ],
)
def test_any_other_answer_is_left_to_the_sdk_model(change):
    assert not_yet({**QUEUED, **change}, None) is None


def test_an_incomplete_answer_keeps_the_text_it_wrote():
    cut = {**PARTIAL_MESSAGE, "status": "incomplete"}
    answer = {**QUEUED, "status": "incomplete", "output": [cut],
              "incomplete_details": {"reason": "max_output_tokens"}}  # fmt: skip

    state = to_state(Response.construct(**answer))

    assert (state.status, state.output_text) == (RunStatus.INCOMPLETE, "Half an ans")
    assert state.error_message == "Response incomplete: max_output_tokens"


@pytest.mark.parametrize("answer", [None, [], "queued", {"status": "queued"}, {"id": 7}])
def test_a_body_that_is_not_a_response_object_is_left_to_the_sdk(answer):
    assert not_yet(answer, None) is None


@pytest.mark.integration
def test_a_retrieve_through_the_sdk_reads_the_same_as_the_full_parse(sdk_on_simulator):
    client = get_client()
    conversation = client.conversations.create()
    created = client.responses.create(
        model="gpt-4.1-mini",
        conversation=conversation.id,
        background=True,
        store=True,
        input="Still thinking?",
        metadata={"sim_queue_s": "60", "sim_duration_s": "60"},  # queued through both reads
    )

    state = ResponsesBackend().retrieve(Run(remote_id=created.id))

    assert state.status == "queued"
    full = to_state(client.responses.retrieve(created.id))
    assert replace(state, poll_after_ms=None) == full


WARM_CHECK = """
import json, sys, django
django.setup()
from celery.signals import worker_init
from openai.types.beta.threads import Run
from openai.types.responses import Response
from pydantic._internal._mock_val_ser import MockCoreSchema

def seen():
    return {
        "resources": any(m.startswith("openai.resources.responses") for m in sys.modules),
        "schemas": [not isinstance(m.__pydantic_core_schema__, MockCoreSchema)
                    for m in (Response, Run)],
    }

before = seen()
worker_init.send(sender=None)
print(json.dumps({"before": before, "after": seen()}))
"""


def test_a_worker_warms_the_sdk_at_start_without_an_api_call():
    """In a fresh process, as a worker starts: nowhere to connect to, and no warning either."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # the discard port: any call would fail
    }
    done = subprocess.run(
        [sys.executable, "-c", WARM_CHECK],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "could not warm" not in done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] == {"resources": False, "schemas": [False, False]}
    assert seen["after"] == {"resources": True, "schemas": [True, True]}  # both backends
