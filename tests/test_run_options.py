"""Run options (issue 16): what each accepts, which combinations are refused (by ``create_run``,
the API and ``startrun``, with nothing written), how a run stores them and what is sent.

No worker here: the options are checked before anything is stored or sent, and what a create
sends is ``backends.common.request_options``, a pure function of the stored run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import get_args, get_type_hints

import pytest
from django.core.cache import caches
from django.core.exceptions import ValidationError
from openai.types.responses.response_create_params import BackgroundOptions
from pydantic import BaseModel

from runs import options
from runs.backends.common import request_options
from runs.models import Message, Run, Thread
from runs.services import create_run, retry_run
from runs.states import transition
from tests.test_bad_input_properties import database_url

pytestmark = pytest.mark.django_db

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}


def closed(**properties: dict) -> dict:
    """An object schema as strict mode wants it: closed, every property required."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


class Trip(BaseModel):
    city: str
    days: int


def rows() -> tuple[int, int, int]:
    return Thread.objects.count(), Message.objects.count(), Run.objects.count()


# --- what create_run accepts and stores --------------------------------------------------------


def test_a_run_without_options_sends_none_and_is_standard():
    run = create_run("hi")
    assert (run.completion_window, run.service_tier, run.mode) == ("soonest", "", "standard")
    assert run.response_format is None
    assert request_options(run, background=True) == {}


def test_every_option_is_stored_and_sent_as_the_responses_api_names_it():
    run = create_run(
        "plan a trip",
        completion_window="8h",
        service_tier="default",
        response_format=SCHEMA,
        reasoning_effort="low",
        max_output_tokens=2000,
        prompt_cache_key="trips-v1",
        safety_identifier="user-4f2a",
    )
    run.refresh_from_db()
    assert run.mode == "8h"
    assert run.response_format == {"name": "output", "schema": SCHEMA, "strict": True}
    assert request_options(run, background=True) == {
        "text": {
            "format": {"type": "json_schema", "name": "output", "schema": SCHEMA, "strict": True}
        },
        "reasoning": {"effort": "low"},
        "max_output_tokens": 2000,
        "prompt_cache_key": "trips-v1",
        "safety_identifier": "user-4f2a",
        "service_tier": "default",
        "background_options": {"completion_window": "8h"},
    }


def test_a_batch_line_carries_the_options_but_not_the_window():
    """The Batch API's own 24 h window applies to its lines (built with background=False)."""
    run = create_run("hi", completion_window="2h", reasoning_effort="high")
    assert request_options(run, background=False) == {"reasoning": {"effort": "high"}}


def test_a_pydantic_model_is_stored_as_its_json_schema_never_the_class():
    run = create_run("plan a trip", response_format=Trip)
    run.refresh_from_db()
    assert run.response_format["name"] == "Trip"
    assert run.response_format["strict"] is True
    schema = run.response_format["schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["city", "days"]
    json.dumps(run.response_format)  # plain JSON, readable by any process


@pytest.mark.parametrize(
    ("window", "tier", "mode"),
    [
        ("soonest", "", "standard"),
        ("soonest", "default", "standard"),
        ("soonest", "flex", "flex"),
        ("soonest", "priority", "tier"),  # not priced: never standard rates (test_pricing.py)
        ("soonest", "scale", "tier"),
        ("soonest", "auto", "tier"),  # the project's default tier, which we cannot see
        ("2h", "", "2h"),
        ("8h", "default", "8h"),
    ],
)
def test_the_mode_follows_the_window_and_the_tier(window, tier, mode):
    assert create_run("hi", completion_window=window, service_tier=tier).mode == mode


def test_every_tier_but_unset_default_and_flex_is_an_unpriced_tier():
    """Whatever tiers the installed SDK knows (a newer one may add some): only the priced ones
    get a priced mode."""
    for tier in options.SERVICE_TIERS:
        expected = {"default": "standard", "flex": "flex"}.get(tier, "tier")
        assert options.mode_of("soonest", tier) == expected, tier
    assert options.mode_of("soonest", "") == "standard"


def test_the_accepted_values_are_the_sdks():
    windows = get_type_hints(BackgroundOptions)["completion_window"]
    assert get_args(windows) == options.WINDOWS
    assert "flex" in options.SERVICE_TIERS and "default" in options.SERVICE_TIERS
    assert {"low", "medium", "high"} <= set(options.REASONING_EFFORTS)


def test_retry_copies_the_options(sent_tasks):
    run = create_run("hi", completion_window="2h", response_format=Trip, reasoning_effort="low")
    transition(run.pk, "failed", source="poll")
    run.refresh_from_db()
    again = retry_run(run)
    assert again.pk != run.pk
    assert (again.completion_window, again.mode, again.reasoning_effort) == ("2h", "2h", "low")
    assert again.response_format == run.response_format
    assert again.deadline_at - again.created_at == pytest.approx(
        run.deadline_at - run.created_at, abs=timedelta(seconds=1)
    )


@pytest.mark.parametrize("window", ["2h", "8h"])
def test_a_windowed_run_given_exactly_its_window_can_be_retried(sent_tasks, window):
    """The copied deadline is read back as ``deadline_at - created_at``, a few microseconds short
    of what was given (``created_at`` is stamped after): a retry must not be refused for it."""
    length = options.window_s(window)
    run = create_run("hi", completion_window=window, deadline_s=length)
    transition(run.pk, "failed", source="poll")
    run.refresh_from_db()
    again = retry_run(run)
    assert (again.deadline_at - again.created_at).total_seconds() >= length - 0.01
    assert again.deadline_at - again.created_at == pytest.approx(
        timedelta(seconds=length), abs=timedelta(seconds=1)
    )


@pytest.mark.parametrize("window", ["soonest", "2h"])
def test_a_retry_of_a_run_with_the_default_deadline_gets_the_default_again(sent_tasks, window):
    run = create_run("hi", completion_window=window)
    transition(run.pk, "failed", source="poll")
    run.refresh_from_db()
    again = retry_run(run)
    assert (again.deadline_at - again.created_at).total_seconds() == pytest.approx(
        options.deadline_s(window, None), abs=0.5
    )


# --- what is refused, with nothing written --------------------------------------------------------

BAD = [
    ({"completion_window": "8h", "service_tier": "flex"}, "drop service_tier='flex'"),
    ({"completion_window": "2h", "service_tier": "priority"}, "need standard processing"),
    ({"completion_window": "2h", "service_tier": "auto"}, "need standard processing"),
    ({"completion_window": "24h"}, "unknown completion_window '24h'"),
    ({"service_tier": "cheap"}, "unknown service_tier 'cheap'"),
    ({"reasoning_effort": "extreme"}, "unknown reasoning_effort 'extreme'"),
    ({"max_output_tokens": 8}, "between 16 and"),
    ({"max_output_tokens": "100"}, "must be an integer"),
    ({"prompt_cache_key": "k" * 65}, "at most 64"),
    ({"safety_identifier": "s" * 65}, "at most 64"),
    ({"response_format": "json"}, "a JSON schema (a dict) or a pydantic model class"),
    ({"response_format": int}, "not a pydantic BaseModel"),
    ({"response_format": {"type": "array", "items": {}}}, "a JSON schema of an object"),
    ({"response_format": closed(a={"type": "strin"})}, "invalid at properties/a/type"),
    (
        {"response_format": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "not required: a",
    ),
    (
        {"response_format": {"name": "bad name!", "schema": SCHEMA}},
        "must be 1-64 letters",
    ),
    (
        {"response_format": closed(x={"$ref": "https://example.com/x.json"})},
        "only local $ref",
    ),
    # A remote reference anywhere a validator would follow it, not only under ``properties``.
    (
        {"response_format": {**closed(a={"type": "string"}), "if": {"$ref": "http://x.test/s"}}},
        "only local $ref",
    ),
    (
        {
            "response_format": {
                "name": "open",
                "strict": False,
                "schema": {"type": "object", "additionalProperties": {"$ref": "http://x.test/s"}},
            }
        },
        "only local $ref ('#/...'); at $.additionalProperties",
    ),
    (
        {"response_format": {**closed(a={"type": "array", "contains": {"$ref": "//x.test"}})}},
        "only local $ref",
    ),
    (
        {"response_format": {**closed(), "patternProperties": {"^a": {"$ref": "file:///x"}}}},
        "only local $ref",
    ),
    ({"response_format": {**closed(), "$dynamicRef": "http://x.test/s"}}, "only local $dynamicRef"),
    ({"response_format": {**closed(), "x-custom": {"$ref": "http://x.test/s"}}}, "only local $ref"),
    ({"response_format": {**SCHEMA, "default": float("nan")}}, "not JSON-serialisable"),
    # What SQLite stores and PostgreSQL's jsonb and text refuse: a message, on every database.
    ({"response_format": {**closed(), "description": "a\x00b"}}, "NUL character"),
    ({"response_format": {**closed(), "description": "\ud800"}}, "lone surrogate"),
    ({"response_format": {**closed(a={"type": "string", "\x00": 1})}}, "NUL character"),
    (
        {"response_format": {"name": "n", "schema": closed(), "description": "a\x00b"}},
        "response_format description",
    ),
    (
        {"response_format": {"name": "n", "schema": closed(), "description": "\ud800"}},
        "response_format description",
    ),
    ({"prompt_cache_key": "k\x00"}, "prompt_cache_key: a string holds a NUL"),
    ({"safety_identifier": "\ud800"}, "safety_identifier: a string holds a lone surrogate"),
    ({"instructions": "a\x00b"}, "instructions: a string holds a NUL"),
    ({"instructions": 7}, "instructions must be text"),
    ({"model": "gpt\ud800"}, "model: a string holds a lone surrogate"),
    ({"metadata": {"k": "a\x00b"}}, "metadata 'k': a string holds a NUL"),
    ({"metadata": {"\ud800": "v"}}, "metadata key: a string holds a lone surrogate"),
    ({"owner": "client:\x00"}, "owner: a string holds a NUL"),
    ({"completion_window": "8h", "deadline_s": 600}, "shorter than the 8h window"),
    ({"backend": "assistants", "completion_window": "2h"}, "no background windows"),
    ({"backend": "assistants", "service_tier": "flex"}, "no service_tier"),
    ({"backend": "assistants", "prompt_cache_key": "k"}, "no prompt_cache_key"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD)
def test_create_run_refuses_bad_options_and_writes_nothing(kwargs, message):
    before = rows()
    with pytest.raises(ValidationError) as refused:
        create_run("hi", **kwargs)
    assert message in " ".join(refused.value.messages)
    assert rows() == before


def test_a_schema_that_contains_itself_is_refused_not_walked_for_ever():
    schema = closed(a={"type": "string"})
    schema["properties"]["me"] = schema  # only the Python API can pass such a thing
    with pytest.raises(ValidationError, match="not JSON-serialisable: Circular reference"):
        create_run("hi", response_format=schema)


@pytest.mark.parametrize("text", ["a\x00b", "caf\udce9"], ids=["nul", "lone-surrogate"])
def test_a_message_postgresql_cannot_store_is_refused_on_every_database(text):
    """SQLite would store it; PostgreSQL's text column refuses it with a DataError (a 500)."""
    before = rows()
    with pytest.raises(ValidationError, match="message text: a string holds"):
        create_run(text)
    assert rows() == before


def test_local_references_and_data_that_looks_like_a_schema_are_accepted():
    """Only remote references are refused; the strict rule applies to schemas, not to data."""
    schema = {
        **closed(a={"$ref": "#/$defs/a"}),
        "$defs": {"a": closed(properties={"type": "string"})},  # a property named "properties"
        "default": {"a": {"properties": "x"}},
        "examples": [{"type": "object"}],  # data: not an open object
    }
    run = create_run("hi", response_format=schema)
    assert run.response_format["schema"] == schema


def test_a_non_strict_schema_may_leave_objects_open():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    run = create_run("hi", response_format={"name": "loose", "schema": schema, "strict": False})
    assert run.response_format == {"name": "loose", "schema": schema, "strict": False}


def test_the_assistants_backend_carries_what_it_can(settings):
    run = create_run(
        "hi",
        backend="assistants",
        response_format=Trip,
        reasoning_effort="low",
        max_output_tokens=500,
    )
    from runs.backends.assistants import _run_options

    sent = _run_options(run)
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "Trip"
    assert (sent["reasoning_effort"], sent["max_completion_tokens"]) == ("low", 500)


def test_a_spend_check_runs_before_anything_is_written(monkeypatch):
    from runs import spend

    def refuse(metadata, *, owner, model):
        raise ValidationError(f"spend limit reached for customer={metadata['customer']}")

    monkeypatch.setattr(spend, "check", refuse)
    before = rows()
    with pytest.raises(ValidationError, match="spend limit reached for customer=acme"):
        create_run("hi", metadata={"customer": "acme"})
    assert rows() == before


# --- the API -------------------------------------------------------------------------------------


@pytest.fixture
def fresh_throttles() -> None:
    caches["default"].clear()


def test_the_api_takes_and_shows_the_options(api, fresh_throttles, sent_tasks):
    answer = api.post(
        "/runs",
        {
            "text": "plan a trip",
            "completion_window": "2h",
            "response_format": SCHEMA,
            "reasoning_effort": "medium",
            "max_output_tokens": 1000,
            "prompt_cache_key": "trips",
            "safety_identifier": "u1",
        },
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert (body["completion_window"], body["mode"], body["service_tier"]) == ("2h", "2h", "")
    assert body["response_format"]["schema"] == SCHEMA
    assert (body["parsed_output"], body["cost"], body["next_poll_at"]) == (None, None, None)
    shown = api.get(f"/runs/{body['id']}").json()
    assert (shown["reasoning_effort"], shown["max_output_tokens"]) == ("medium", 1000)


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        ({"completion_window": "8h", "service_tier": "flex"}, 400, "drop service_tier='flex'"),
        ({"response_format": {"type": "string"}}, 400, "a JSON schema of an object"),
        ({"completion_window": "8h", "deadline_s": 60}, 400, "shorter than the 8h window"),
        ({"completion_window": "3h"}, 422, "completion_window"),
        ({"max_output_tokens": 1}, 422, "max_output_tokens"),
        ({"service_tier": "cheap"}, 422, "service_tier"),
        ({"response_format": {**closed(), "description": "a\x00b"}}, 400, "NUL character"),
        (
            {"response_format": {"name": "n", "schema": closed(), "description": "\ud800"}},
            400,
            "response_format description",
        ),
    ],
)
def test_the_api_refuses_bad_options_with_a_message(
    api, fresh_throttles, sent_tasks, extra, status, message
):
    before = rows()
    answer = api.post("/runs", {"text": "hi", **extra})
    assert answer.status_code == status
    assert message in json.dumps(answer.json())
    assert rows() == before
    assert sent_tasks == []


# --- startrun ------------------------------------------------------------------------------------


def run_manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        },
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "8h", "--service-tier", "flex"], "drop service_tier='flex'"),
        (["--window", "3h"], "invalid choice"),
        (["--max-output-tokens", "5"], "between 16 and"),
        (["--schema", "/nonexistent/schema.json"], "cannot read"),
        (["--schema", "{not_json}"], "is not JSON"),
        (["--schema", "{list}"], "must hold a JSON object"),
        (["--schema", "{array_schema}"], "a JSON schema of an object"),
    ],
)
def test_startrun_refuses_bad_options_with_exit_2(tmp_path, args, message):
    files = {
        "{not_json}": ("bad.json", "{nope"),
        "{list}": ("list.json", "[1, 2]"),
        "{array_schema}": ("array.json", '{"type": "array"}'),
    }
    for i, arg in enumerate(args):
        if arg in files:
            name, text = files[arg]
            (tmp_path / name).write_text(text)
            args[i] = str(tmp_path / name)
    before = rows()
    result = run_manage("startrun", "hi", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert rows() == before


def test_startrun_reads_a_schema_file(tmp_path, monkeypatch):
    from django.core.management import call_command

    from runs.tasks import start_run

    monkeypatch.setattr(start_run, "delay", lambda run_id: None)  # no broker in this test
    path = tmp_path / "trip.json"
    path.write_text(json.dumps(SCHEMA))
    call_command("startrun", "plan", "--schema", str(path), "--window", "2h")
    run = Run.objects.get()
    assert run.response_format == {"name": "trip", "schema": SCHEMA, "strict": True}
    assert run.mode == "2h"


def test_startrun_refuses_a_schema_file_nested_too_deeply_to_read(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    path = tmp_path / "deep.json"
    path.write_text('{"type": "object", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CommandError, match="nested too deeply") as raised:
        call_command("startrun", "plan", "--schema", str(path))
    assert raised.value.returncode == 2
    assert not Run.objects.exists()
