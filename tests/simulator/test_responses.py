"""Background Responses through the real SDK: lifecycle, outcomes, cancel, errors."""

from __future__ import annotations

import time

import openai
import pytest
from openai import OpenAI
from openai.types.responses import Response

from runs_simulator.testing import RunningSimulator

from .helpers import strict, wait_for


def _create(
    client: OpenAI, duration: float, outcome: str, metadata: dict[str, str] | None = None
) -> Response:
    meta = {"sim_duration_s": str(duration), "sim_outcome": outcome, "sim_queue_s": "0.1"}
    meta.update(metadata or {})
    return client.responses.create(
        model="gpt-4o", input="What is 2+2?", background=True, metadata=meta
    )


def _raw(client: OpenAI, response_id: str) -> dict[str, object]:
    raw = client.responses.with_raw_response.retrieve(response_id)
    payload: dict[str, object] = raw.http_response.json()
    return payload


def test_background_lifecycle_queued_in_progress_completed(client: OpenAI) -> None:
    created = _create(client, 0.6, "completed")
    assert created.status == "queued"
    assert created.background is True and created.output == [] and created.usage is None
    seen: set[str | None] = {created.status}

    def finished(response: Response) -> bool:
        seen.add(response.status)
        return response.status == "completed"

    final = wait_for(lambda: client.responses.retrieve(created.id), finished, interval=0.03)
    assert seen >= {"queued", "in_progress", "completed"}
    assert final.output_text == "Simulated answer to: What is 2+2?"
    assert final.usage is not None and final.usage.total_tokens == (
        final.usage.input_tokens + final.usage.output_tokens
    )
    assert final.usage.input_tokens_details.cached_tokens == 0
    assert final.usage.output_tokens_details.reasoning_tokens == 0
    assert final.completed_at is not None and final.error is None
    strict(Response, _raw(client, created.id))


@pytest.mark.parametrize("outcome", ["completed", "failed", "incomplete", "cancelled"])
def test_every_outcome_parses_strictly(client: OpenAI, outcome: str) -> None:
    created = _create(client, 0.2, outcome)
    time.sleep(0.25)
    payload = _raw(client, created.id)
    response = strict(Response, payload)
    assert response.status == outcome
    if outcome == "completed":
        assert response.output_text and response.usage is not None
    elif outcome == "failed":
        assert response.error is not None and response.error.code == "server_error"
        assert response.error.message and response.output == [] and response.completed_at is None
    elif outcome == "incomplete":
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
        assert response.output[0].model_dump()["status"] == "incomplete"
        assert response.usage is not None
    else:
        assert response.output == [] and response.usage is None


def test_synchronous_create_answers_finished_response(client: OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o", input="hi", metadata={"sim_outcome": "completed"}
    )
    assert response.status == "completed" and response.background is False
    assert response.output_text == "Simulated answer to: hi"


def test_cancel_background_then_terminal_cancel_is_400(client: OpenAI) -> None:
    created = _create(client, 5.0, "completed")
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(created.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.cancel(created.id)
    assert info.value.status_code == 400
    done = _create(client, 0.05, "completed")
    time.sleep(0.1)
    with pytest.raises(openai.BadRequestError, match="Cannot cancel a completed response"):
        client.responses.cancel(done.id)
    assert isinstance(info.value.body, dict) and info.value.body.get("type") == (
        "invalid_request_error"
    )


def test_unknown_ids_and_missing_key(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="resp_missing"):
        client.responses.retrieve("resp_missing")
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_missing")
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve("conv_missing")
    with pytest.raises(openai.AuthenticationError) as info:
        client.responses.retrieve("resp_x", extra_headers={"Authorization": openai.Omit()})
    assert info.value.status_code == 401 and info.value.code is None
    assert "didn't provide an API key" in info.value.message


def test_bad_metadata_is_rejected_like_the_api(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="expected a string"):
        client.responses.create(model="gpt-4o", input="x", metadata={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(openai.BadRequestError, match="sim_outcome"):
        client.responses.create(model="gpt-4o", input="x", metadata={"sim_outcome": "nope"})


def test_poll_after_header_only_while_running(client: OpenAI) -> None:
    created = _create(client, 0.3, "completed")
    raw = client.responses.with_raw_response.retrieve(created.id)
    assert raw.headers.get("openai-poll-after-ms") == "250"
    time.sleep(0.35)
    raw = client.responses.with_raw_response.retrieve(created.id)
    assert raw.headers.get("openai-poll-after-ms") is None


def test_stats_count_calls_objects_and_creates_by_run_id(
    client: OpenAI, sim: RunningSimulator
) -> None:
    before = time.time()
    first = _create(client, 0.2, "completed", metadata={"run_id": "run-42"})
    _create(client, 0.2, "completed", metadata={"run_id": "run-42"})
    _create(client, 0.2, "completed", metadata={"run_id": "run-7"})
    for _ in range(3):
        client.responses.retrieve(first.id)
    time.sleep(0.25)
    stats = sim.stats()
    assert stats["calls"]["responses.create"] == 3
    assert stats["calls"]["responses.retrieve"] == 3
    assert stats["creates_by_run_id"] == {"run-42": 2, "run-7": 1}
    row = stats["objects"][first.id]
    assert (row["create"], row["retrieve"], row["cancel"]) == (1, 3, 0)
    assert row["status"] == "completed" and row["metadata_run_id"] == "run-42"
    assert before <= row["created_at"] < row["terminal_at"] <= time.time()
    assert row["terminal_at"] == pytest.approx(row["created_at"] + 0.2, abs=1e-6)
    latency = stats["latency"]  # the simulator's own handling time, of each API request
    assert latency["count"] == 6  # 3 creates + 3 retrieves; /_sim calls are not API requests
    assert 0 <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    sim.reset()
    assert sim.stats()["objects"] == {}


def test_seeded_ids_are_reproducible(client: OpenAI, sim: RunningSimulator) -> None:
    first = client.responses.create(model="gpt-4o", input="a").id
    sim.reset()
    assert client.responses.create(model="gpt-4o", input="a").id == first
