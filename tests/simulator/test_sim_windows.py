"""Cheap and long responses through the real SDK: the time scale, 2h/8h windows, flex,
structured outputs, reasoning effort, token caps and prompt caching."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from typing import Any, Literal

import openai
import pytest
from openai import OpenAI
from openai.lib._pydantic import to_strict_json_schema
from openai.types.responses import Response
from pydantic import BaseModel, ValidationError

from runs_simulator.testing import RunningSimulator, SimulatorStartError

from .helpers import assert_schema, strict, wait_for

jsonschema = pytest.importorskip("jsonschema")


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    number: int


class Person(BaseModel):
    name: str
    age: int
    height_m: float
    member: bool
    colour: Colour
    kind: Literal["customer", "staff"]
    tags: list[str]
    home: Address
    nickname: str | None


def _schema() -> dict[str, Any]:
    """What ``responses.parse`` (and the app) sends: the SDK's strict conversion."""
    return to_strict_json_schema(Person)


def _json_schema_text(schema: dict[str, Any], strict_mode: bool = True) -> Any:
    return {
        "format": {"type": "json_schema", "name": "Person", "schema": schema, "strict": strict_mode}
    }


def _raw(client: OpenAI, response_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = client.responses.with_raw_response.retrieve(
        response_id
    ).http_response.json()
    return payload


def _bad_request(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as info:
        call()
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "invalid_request_error"
    return info.value


# --- the time scale -------------------------------------------------------------------------


def test_time_scale_comes_from_the_environment_then_the_flag_then_the_config() -> None:
    env = dict(os.environ, RUNS_TIME_SCALE="0.01")
    with RunningSimulator(env=env, log_level="error") as sim:
        assert sim.config()["time_scale"] == 0.01
        assert sim.configure(time_scale=0.5)["time_scale"] == 0.5
        sim.reset()
        assert sim.config()["time_scale"] == 0.01  # reset restores the start-up value
    with RunningSimulator(env=env, time_scale=0.002, log_level="error") as sim:
        assert sim.config()["time_scale"] == 0.002


def test_a_malformed_time_scale_stops_the_start_with_its_name() -> None:
    env = dict(os.environ, RUNS_TIME_SCALE="fast")
    with pytest.raises(SimulatorStartError, match="RUNS_TIME_SCALE"):
        RunningSimulator(env=env, start_timeout=10).start()


def test_config_refuses_bad_window_and_batch_settings(sim: RunningSimulator) -> None:
    for bad in (
        {"time_scale": 0},
        {"window_fraction_min": 0.7, "window_fraction_max": 0.6},
        {"flex_slowdown": 0.5},
        {"batch_force": "exploded"},
        {"batch_line_failure_rate": 2},
    ):
        with pytest.raises(Exception, match="400"):
            sim.configure(**bad)
    assert sim.configure(batch_force="expired")["batch_force"] == "expired"
    assert sim.configure(batch_force=None)["batch_force"] is None


# --- 2h / 8h windows --------------------------------------------------------------------------


@pytest.mark.parametrize("window,seconds", [("2h", 7200.0), ("8h", 28800.0)])
def test_a_window_response_ends_within_its_scaled_window(
    client: OpenAI, sim: RunningSimulator, window: str, seconds: float
) -> None:
    scale = 2.0 / seconds  # the window lasts 2 s on this clock
    sim.configure(time_scale=scale, outcome_weights={"completed": 1.0})
    created = [
        client.responses.create(
            model="gpt-4o",
            input=f"long job {i}",
            background=True,
            background_options={"completion_window": window, "continuation_id": "job-7"},
        )
        for i in range(8)
    ]
    assert {r.status for r in created} == {"queued"}
    assert {r.service_tier for r in created} == {"default"}
    for response in created:
        final = wait_for(
            lambda rid=response.id: client.responses.retrieve(rid),
            lambda r: r.status == "completed",
            timeout=5,
        )
        assert final.output_text.startswith("Simulated answer to: long job")
        row = sim.stats()["objects"][response.id]
        took = row["terminal_at"] - row["created_at"]
        assert 0.05 * 2.0 - 1e-6 <= took <= 0.6 * 2.0 + 1e-6  # window_fraction_min/max


def test_metadata_pins_still_win_over_the_window(client: OpenAI, sim: RunningSimulator) -> None:
    sim.configure(time_scale=1.0)  # an unpinned 8h response would take hours
    response = client.responses.create(
        model="gpt-4o",
        input="pinned",
        background=True,
        background_options={"completion_window": "8h"},
        metadata={"sim_duration_s": "0.2", "sim_outcome": "failed"},
    )
    row = sim.stats()["objects"][response.id]
    assert row["terminal_at"] is None
    final = wait_for(lambda: client.responses.retrieve(response.id), lambda r: r.status == "failed")
    assert final.error is not None
    row = sim.stats()["objects"][response.id]
    assert row["terminal_at"] == pytest.approx(row["created_at"] + 0.2, abs=1e-6)


def test_windows_require_background_and_standard_processing(client: OpenAI) -> None:
    def create(**kwargs: Any) -> Response:
        return client.responses.create(model="gpt-4o", input="x", **kwargs)

    error = _bad_request(lambda: create(background_options={"completion_window": "2h"}))
    assert error.param == "background"
    for tier in ("flex", "priority"):
        error = _bad_request(
            lambda tier=tier: create(
                background=True, background_options={"completion_window": "8h"}, service_tier=tier
            )
        )
        assert error.param == "service_tier" and "standard processing" in error.message
    error = _bad_request(
        lambda: create(background=True, background_options={"completion_window": "4h"})
    )
    assert error.param == "background_options.completion_window"
    error = _bad_request(lambda: create(background=True, background_options={"window": "2h"}))
    assert error.param == "background_options.window"
    for tier in ("auto", "default"):
        ok = create(
            background=True, background_options={"completion_window": "2h"}, service_tier=tier
        )
        assert ok.service_tier == "default"
    soonest = create(background_options={"completion_window": "soonest"}, service_tier="flex")
    assert soonest.status == "completed" and soonest.service_tier == "flex"


def test_flex_is_slower_by_the_configured_factor(client: OpenAI, sim: RunningSimulator) -> None:
    sim.configure(
        duration_median_s=0.6,
        duration_sigma=0.0,
        flex_slowdown=3.0,
        outcome_weights={"completed": 1.0},
    )

    def took(**kwargs: Any) -> float:
        created = client.responses.create(model="gpt-4o", input="x", background=True, **kwargs)
        row = sim.stats()["objects"][created.id]
        final = wait_for(
            lambda: _raw(client, created.id), lambda r: r["status"] == "completed", timeout=5
        )
        assert final["service_tier"] == ("flex" if kwargs else "default")
        return float(sim.stats()["objects"][created.id]["terminal_at"] - row["created_at"])

    assert took() == pytest.approx(0.6, abs=1e-6)
    assert took(service_tier="flex") == pytest.approx(1.8, abs=1e-6)


# --- structured outputs -----------------------------------------------------------------------


def test_structured_output_matches_the_schema_and_parses_with_the_sdk(client: OpenAI) -> None:
    parsed = client.responses.parse(model="gpt-4o", input="who?", text_format=Person)
    person = parsed.output_parsed
    assert isinstance(person, Person) and person.colour == Colour.RED
    assert person.kind == "customer" and len(person.tags) == 1 and person.home.number == 1
    created = client.responses.create(
        model="gpt-4o",
        input="who?",
        background=True,
        text=_json_schema_text(_schema()),
        metadata={"sim_duration_s": "0.05"},
    )
    final = wait_for(lambda: _raw(client, created.id), lambda r: r["status"] == "completed")
    assert_schema("Response", final)
    response = strict(Response, final)
    assert response.text is not None and response.text.format.type == "json_schema"
    document = json.loads(response.output_text)
    jsonschema.validate(document, _schema())
    Person.model_validate(document)


def test_mismatch_pins_give_json_that_fails_the_schema_or_no_json(client: OpenAI) -> None:
    def output(pin: str, text: Any) -> str:
        response = client.responses.create(
            model="gpt-4o", input="who?", text=text, metadata={"sim_output": pin}
        )
        return response.output_text

    mismatch = json.loads(output("schema_mismatch", _json_schema_text(_schema())))
    assert isinstance(mismatch, dict)
    with pytest.raises(jsonschema.ValidationError, match="required property"):
        jsonschema.validate(mismatch, _schema())
    with pytest.raises(ValidationError):
        Person.model_validate(mismatch)
    with pytest.raises(json.JSONDecodeError):
        json.loads(output("not_json", _json_schema_text(_schema())))
    error = _bad_request(lambda: output("garbage", None))
    assert error.param == "metadata.sim_output"


def test_json_object_format_answers_a_json_object(client: OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o", input="hi", text={"format": {"type": "json_object"}}
    )
    assert isinstance(json.loads(response.output_text), dict)


def test_schemas_the_api_would_refuse_are_refused(client: OpenAI) -> None:
    loose = Person.model_json_schema()  # pydantic's own: no additionalProperties: false
    error = _bad_request(
        lambda: client.responses.create(model="gpt-4o", input="x", text=_json_schema_text(loose))
    )
    assert error.param == "text.format.schema" and "additionalProperties" in error.message
    not_all_required = _schema()
    not_all_required["required"] = ["name"]
    error = _bad_request(
        lambda: client.responses.create(
            model="gpt-4o", input="x", text=_json_schema_text(not_all_required)
        )
    )
    assert "Missing 'age'" in error.message
    # Without strict mode the same loose schema is accepted, and still answered from.
    ok = client.responses.create(
        model="gpt-4o", input="x", text=_json_schema_text(loose, strict_mode=False)
    )
    Person.model_validate_json(ok.output_text)
    error = _bad_request(
        lambda: client.responses.create(
            model="gpt-4o", input="x", text=_json_schema_text({"type": "array", "items": {}})
        )
    )
    assert error.param == "text.format.schema"


def test_schemas_with_refs_recursion_and_bounds_generate_valid_documents(client: OpenAI) -> None:
    class Node(BaseModel):
        label: str
        children: list[Node]
        parent: Node | None

    class Bounded(BaseModel):
        score: int
        ratio: float
        nodes: list[Node]

    schema = to_strict_json_schema(Bounded)
    schema["properties"]["score"].update(minimum=5, maximum=9)
    schema["properties"]["ratio"].update(exclusiveMinimum=2)
    response = client.responses.create(
        model="gpt-4o",
        input="x",
        text={
            "format": {"type": "json_schema", "name": "Bounded", "schema": schema, "strict": True}
        },
    )
    document = json.loads(response.output_text)
    jsonschema.validate(document, schema)
    assert document["score"] == 5 and document["ratio"] > 2


# --- reasoning, token caps, caching, identifiers ------------------------------------------------


def test_reasoning_cache_key_and_identifiers_are_echoed_and_counted(client: OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o",
        input="think hard about this question",
        reasoning={"effort": "high", "summary": "auto"},
        prompt_cache_key="customer-42",
        safety_identifier="user-hash-1",
        max_output_tokens=2000,
    )
    assert response.reasoning is not None and response.reasoning.effort == "high"
    assert (
        response.prompt_cache_key == "customer-42" and response.safety_identifier == "user-hash-1"
    )
    assert response.max_output_tokens == 2000 and response.status == "completed"
    usage = response.usage
    assert usage is not None
    assert usage.output_tokens_details.reasoning_tokens == 256
    assert usage.output_tokens > 256
    assert usage.input_tokens_details.cached_tokens == usage.input_tokens // 2 > 0
    plain = client.responses.create(model="gpt-4o", input="think hard about this question")
    assert plain.usage is not None and plain.usage.input_tokens_details.cached_tokens == 0
    assert plain.usage.output_tokens_details.reasoning_tokens == 0


def test_an_answer_over_max_output_tokens_ends_incomplete(client: OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o",
        input="a question long enough that its simulated answer passes the cap " * 4,
        reasoning={"effort": "low"},
        max_output_tokens=40,
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 40
    assert response.usage.output_tokens_details.reasoning_tokens == 32
    structured = client.responses.create(
        model="gpt-4o",
        input="x",
        reasoning={"effort": "minimal"},
        max_output_tokens=16,
        text=_json_schema_text(_schema()),
    )
    assert structured.status == "incomplete"
    with pytest.raises(json.JSONDecodeError):
        json.loads(structured.output_text)


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"max_output_tokens": "100"}, "max_output_tokens"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "long"}}, "reasoning.summary"),
        ({"safety_identifier": "x" * 65}, "safety_identifier"),
        ({"prompt_cache_key": 7}, "prompt_cache_key"),
        ({"service_tier": "cheapest"}, "service_tier"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    ],
)
def test_bad_options_are_400s_naming_the_parameter(
    client: OpenAI, sim: RunningSimulator, kwargs: dict[str, Any], param: str
) -> None:
    error = _bad_request(lambda: client.responses.create(model="gpt-4o", input="x", **kwargs))
    assert error.param == param
    assert sim.stats()["objects"] == {}  # refused before anything was stored
