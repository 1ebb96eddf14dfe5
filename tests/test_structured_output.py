"""Structured outputs (issue 16): a completed run's output is parsed and checked against the
schema it asked for; output that is not JSON, or does not match, fails the run with the first
violation named and the text kept.

The unit tests check ``runs/structured.py`` and the answer's move (``engine.answers.move_to``);
the integration tests run through a real worker, Redis and the simulator, which answers a
``text.format`` request with JSON built from the schema (or, pinned by the ``sim_output``
metadata, with JSON that does not match or text that is not JSON).
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from runs import structured
from runs.backends.base import RemoteState
from runs.engine.answers import move_to
from runs.engine.batch_files import LineResult
from runs.engine.batch_runs import end_fields
from runs.services import create_run
from runs.tasks import start_run

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "stops": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["city", "days", "stops"],
    "additionalProperties": False,
}
FORMAT = {"name": "trip", "schema": SCHEMA, "strict": True}


class Stop(BaseModel):
    name: str


class Trip(BaseModel):
    city: str
    days: int
    stops: list[Stop]


# --- checking an output --------------------------------------------------------------------------


def test_matching_output_is_parsed():
    checked = structured.check(FORMAT, '{"city": "Oslo", "days": 3, "stops": [{"name": "a"}]}')
    assert checked.ok
    assert checked.parsed == {"city": "Oslo", "days": 3, "stops": [{"name": "a"}]}


def test_a_mismatch_names_the_path_and_the_rule():
    checked = structured.check(FORMAT, '{"city": "Oslo", "days": 3, "stops": [{"name": 7}]}')
    assert not checked.ok
    assert checked.error_code == "output_schema_mismatch"
    assert checked.error == (
        "The output does not match the 'trip' schema: at $.stops[0].name, 7 is not of type 'string'"
    )


def test_a_missing_property_is_named():
    checked = structured.check(FORMAT, '{"city": "Oslo", "stops": []}')
    assert checked.error == (
        "The output does not match the 'trip' schema: at $, 'days' is a required property"
    )


def test_text_that_is_not_json_is_its_own_error():
    checked = structured.check(FORMAT, "Sure! Here is your trip: {")
    assert checked.error_code == "output_not_json"
    assert checked.error.startswith("The output is not JSON as the 'trip' schema asks")
    assert "Sure! Here is your trip" in checked.error


def test_an_empty_output_is_not_json():
    assert structured.check(FORMAT, "").error_code == "output_not_json"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 100_000, "nested too deep"),  # json.loads raises RecursionError, not ValueError
        ("[" * 5000 + "]" * 5000, "nested too deep"),  # valid JSON, still past the parser's limit
    ],
    ids=["unclosed", "valid"],
)
def test_output_nested_too_deep_is_not_json_and_never_raises(text, says):
    checked = structured.check(FORMAT, text)
    assert checked.error_code == "output_not_json"
    assert says in checked.error
    assert len(checked.error) < 300  # the text is shortened, not copied


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"city": "Os\\u0000lo", "days": 1, "stops": []}', "NUL character"),
        ('{"city": "\\ud800", "days": 1, "stops": []}', "lone surrogate"),
        ('{"city": "Oslo", "days": 1, "stops": [], "\\u0000": 1}', "NUL character"),
    ],
    ids=["nul", "surrogate", "nul-key"],
)
def test_json_that_a_json_column_cannot_hold_fails_clearly(text, says):
    """Valid JSON that PostgreSQL's jsonb refuses: saving it would fail the run's end."""
    checked = structured.check(FORMAT, text)
    assert checked.error_code == "output_not_json"
    assert checked.error.startswith("The output is JSON but cannot be stored")
    assert says in checked.error
    assert checked.parsed is None


def test_a_check_never_fetches_a_remote_reference(monkeypatch):
    """A stored schema with a remote ``$ref`` (refused at creation now, but a row may be older):
    the check fails the output instead of making the worker fetch the URL."""
    import urllib.request

    import jsonschema.validators

    fetched: list[object] = []

    def urlopen(*args: object, **kwargs: object) -> object:
        fetched.append(args)
        raise AssertionError("a URL was fetched")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(jsonschema.validators, "urlopen", urlopen, raising=False)
    schema = {"type": "object", "if": {"$ref": "http://schemas.test/evil.json"}, "then": {}}
    checked = structured.check({"name": "remote", "schema": schema}, "{}")
    assert fetched == []
    assert checked.error_code == "output_schema_mismatch"
    assert checked.error.startswith("The output could not be checked against the 'remote' schema")


def test_a_check_that_cannot_run_is_a_failed_check_not_an_exception():
    bad = {"name": "broken", "schema": {"type": "object", "pattern": "("}, "strict": False}
    checked = structured.check(bad, '"text"')
    assert not checked.ok
    assert checked.error_code == "output_schema_mismatch"


# --- the answer's move ---------------------------------------------------------------------------


def completed(text: str) -> RemoteState:
    return RemoteState(
        remote_id="resp_1",
        status="completed",
        remote_status="completed",
        output_text=text,
        usage={"input_tokens": 5, "output_tokens": 9},
    )


@pytest.mark.django_db
def test_a_structured_run_completes_with_its_parsed_output():
    run = create_run("plan", response_format=SCHEMA)
    move = move_to(run, completed('{"city": "Oslo", "days": 2, "stops": []}'), "poll")
    assert move.to_status == "completed"
    assert move.fields["parsed_output"] == {"city": "Oslo", "days": 2, "stops": []}
    assert move.fields["last_error_code"] == ""


@pytest.mark.django_db
def test_a_structured_run_whose_output_does_not_match_fails_and_keeps_the_text():
    run = create_run("plan", response_format=SCHEMA)
    move = move_to(run, completed('{"city": "Oslo"}'), "poll")
    assert move.to_status == "failed"
    assert move.fields["last_error_code"] == "output_schema_mismatch"
    assert "'days' is a required property" in move.fields["last_error"]
    assert move.fields["output_text"] == '{"city": "Oslo"}'
    assert "parsed_output" not in move.fields
    assert move.detail["remote_status"] == "completed"  # what OpenAI said, on the timeline


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text", ["[" * 100_000, '{"city": "\\u0000", "days": 1, "stops": []}'], ids=["deep", "nul"]
)
def test_an_unusable_output_fails_the_run_instead_of_crashing_the_tick(text):
    """The poll, batched polling and a Batch API job's settle all end a run through a check that
    never raises: the run fails with the reason, and nothing is retried until the deadline."""
    run = create_run("plan", response_format=SCHEMA)
    move = move_to(run, completed(text), "poll")
    assert move.to_status == "failed"
    assert move.fields["last_error_code"] == "output_not_json"
    assert "parsed_output" not in move.fields
    status, fields = end_fields(run, LineResult(run.pk, "completed", output_text=text))
    assert (status, fields["last_error_code"]) == ("failed", "output_not_json")
    assert fields["parsed_output"] is None


@pytest.mark.django_db
def test_a_plain_run_is_not_parsed():
    run = create_run("plan")
    move = move_to(run, completed("not JSON, and that is fine"), "poll")
    assert move.to_status == "completed"
    assert "parsed_output" not in move.fields


# --- through the worker and the simulator --------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("response_format", [Trip, SCHEMA], ids=["pydantic", "dict"])
def test_a_structured_run_ends_with_parsed_json(worker, wait_terminal, response_format):
    run = create_run(
        "plan a trip",
        response_format=response_format,
        metadata={"sim_duration_s": "0.3", "sim_outcome": "completed"},
    )
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "completed", run.last_error
    assert Trip.model_validate(run.parsed_output)  # the shape the schema promised
    assert isinstance(run.parsed_output["stops"], list)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("pin", "code", "says"),
    [
        (
            "schema_mismatch",
            "output_schema_mismatch",
            "The output does not match the 'Trip' schema: at $",
        ),
        ("not_json", "output_not_json", "The output is not JSON as the 'Trip' schema asks"),
    ],
)
def test_an_output_that_breaks_the_schema_fails_the_run_clearly(
    worker, wait_terminal, pin, code, says
):
    run = create_run(
        "plan a trip",
        response_format=Trip,
        metadata={"sim_duration_s": "0.3", "sim_outcome": "completed", "sim_output": pin},
    )
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "failed"
    assert run.last_error_code == code
    assert run.last_error.startswith(says)
    assert run.output_text  # kept for inspection
    assert run.parsed_output is None
    assert run.events.last().detail == {
        "remote_status": "completed",
        "remote_id": run.remote_id,
        "error": code,
    }
