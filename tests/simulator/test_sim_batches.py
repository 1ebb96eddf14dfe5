"""Files, batches and ``batch.*`` webhooks through the real SDK: shapes, the batch timeline,
partial failures, expiry, cancel, validation failures and signed events."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.lib._pydantic import to_strict_json_schema
from openai.types import Batch, FileDeleted, FileObject
from openai.types.responses import Response
from openai.types.webhooks import (
    BatchCancelledWebhookEvent,
    BatchCompletedWebhookEvent,
    BatchExpiredWebhookEvent,
    BatchFailedWebhookEvent,
)
from pydantic import BaseModel

from runs_simulator.batch_lines import line_fails
from runs_simulator.testing import RunningSimulator

from .helpers import assert_schema, strict, wait_for
from .receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"simulator-batch-secret-012345678").decode()
TERMINAL = ("completed", "failed", "expired", "cancelled")
#: Quick batches: 0.1 s validating, lines over 0.6 s, 0.1 s finalizing.
QUICK = {"batch_validating_s": 0.1, "batch_duration_s": 0.6, "batch_finalizing_s": 0.1}


class Verdict(BaseModel):
    label: str
    score: int


def _line(custom_id: str, **body: Any) -> dict[str, Any]:
    request = {"model": "gpt-4o", "input": f"question {custom_id}", **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/responses", "body": request}


def _upload(client: OpenAI, rows: list[Any], name: str = "requests.jsonl") -> str:
    text = "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n"
    return client.files.create(file=(name, text.encode()), purpose="batch").id


def _submit(client: OpenAI, rows: list[Any], **kwargs: Any) -> Batch:
    return client.batches.create(
        input_file_id=_upload(client, rows),
        endpoint="/v1/responses",
        completion_window="24h",
        **kwargs,
    )


def _finished(client: OpenAI, batch_id: str, timeout: float = 10) -> Batch:
    return wait_for(
        lambda: client.batches.retrieve(batch_id), lambda b: b.status in TERMINAL, timeout
    )


def _rows(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def _raw_batch(client: OpenAI, batch_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = client.batches.with_raw_response.retrieve(
        batch_id
    ).http_response.json()
    return payload


def _without_nulls(value: Any) -> Any:
    """The description types unset batch fields as plain strings/integers, while the API sends
    them as null: the schema check looks at the fields that are set."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


# --- files ------------------------------------------------------------------------------------


def test_files_upload_read_list_and_delete(client: OpenAI, sim: RunningSimulator) -> None:
    content = b'{"custom_id": "a"}\r\n{"custom_id": "b"}\n'
    raw = client.files.with_raw_response.create(file=("in.jsonl", content), purpose="batch")
    payload = raw.http_response.json()
    assert_schema("OpenAIFile", _without_nulls(payload))
    uploaded = strict(FileObject, payload)
    assert uploaded.id.startswith("file-") and uploaded.bytes == len(content)
    assert uploaded.purpose == "batch" and uploaded.filename == "in.jsonl"
    assert uploaded.expires_at == uploaded.created_at + 30 * 24 * 3600
    assert client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id).read() == content  # bytes exactly as sent
    assert [f.id for f in client.files.list(purpose="batch")] == [uploaded.id]
    deleted = client.files.delete(uploaded.id)
    assert strict(FileDeleted, deleted.model_dump()).deleted is True
    with pytest.raises(openai.NotFoundError, match=uploaded.id):
        client.files.retrieve(uploaded.id)
    calls = sim.stats()["calls"]
    assert calls["files.create"] == 1 and calls["files.content"] == 1
    assert calls["files.delete"] == 1 and calls["files.retrieve"] == 2


def test_uploads_the_api_refuses(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"\.jsonl"):
        client.files.create(file=("in.csv", b"a,b\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("in.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="expires_after"):
        client.files.create(
            file=("in.jsonl", b"{}\n"),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 60},
        )


# --- a batch with partial failures --------------------------------------------------------------


def test_fifty_lines_with_failures_end_with_the_right_counts_and_files(
    client: OpenAI, sim: RunningSimulator
) -> None:
    sim.configure(**QUICK, batch_line_failure_rate=0.1, time_scale=1.0)
    structured = {
        "format": {
            "type": "json_schema",
            "name": "Verdict",
            "schema": to_strict_json_schema(Verdict),
            "strict": True,
        }
    }
    rows = []
    for i in range(50):
        metadata = {"run_id": str(i)}
        if i in (7, 8):
            metadata["sim_outcome"] = "failed"  # always fails, whatever the rate
        body: dict[str, Any] = {"metadata": metadata}
        if i % 2:
            body["text"] = structured
        rows.append(_line(f"run-{i}", **body))
    expected_failed = {f"run-{i}" for i in range(50) if i in (7, 8) or line_fails(f"run-{i}", 0.1)}
    assert 2 < len(expected_failed) < 20

    created = _submit(client, rows, metadata={"purpose": "nightly"})
    assert created.status == "validating" and created.request_counts is not None
    assert created.request_counts.total == 0 and created.metadata == {"purpose": "nightly"}
    assert created.expires_at == created.created_at + 24 * 3600
    seen: list[tuple[str, int, int]] = []

    def probe() -> Batch:
        batch = client.batches.retrieve(created.id)
        assert batch.request_counts is not None
        seen.append((batch.status, batch.request_counts.completed, batch.request_counts.failed))
        return batch

    batch = wait_for(probe, lambda b: b.status in TERMINAL, timeout=10, interval=0.02)
    statuses = [status for status, _, _ in seen]
    assert batch.status == "completed"
    assert {"in_progress", "finalizing", "completed"} <= set(statuses)
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)  # counts only grow
    payload = _raw_batch(client, batch.id)
    assert_schema("Batch", _without_nulls(payload))
    batch = strict(Batch, payload)
    assert batch.request_counts is not None and batch.request_counts.total == 50
    assert batch.request_counts.failed == len(expected_failed)
    assert batch.request_counts.completed == 50 - len(expected_failed)
    assert batch.model == "gpt-4o" and batch.usage is not None and batch.usage.total_tokens > 0
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at  # type: ignore[operator]

    output = _rows(client, batch.output_file_id)
    errors = _rows(client, batch.error_file_id)
    assert {row["custom_id"] for row in errors} == expected_failed
    assert {row["custom_id"] for row in output} == {f"run-{i}" for i in range(50)} - expected_failed
    for row in output:
        assert row["id"].startswith("batch_req_") and row["error"] is None
        assert row["response"]["status_code"] == 200 and row["response"]["request_id"]
        response = strict(Response, row["response"]["body"])
        assert response.status == "completed" and response.service_tier == "default"
        assert response.usage is not None and response.usage.output_tokens > 0
        index = int(row["custom_id"].split("-")[1])
        if index % 2:
            Verdict.model_validate_json(response.output_text)
        else:
            assert response.output_text == f"Simulated answer to: question run-{index}"
    for row in errors:
        assert row["error"] is None and row["response"]["status_code"] == 500
        assert row["response"]["body"]["error"]["type"] == "server_error"
    output_file = client.files.retrieve(batch.output_file_id or "")
    assert output_file.purpose == "batch_output"
    assert output_file.filename == f"{batch.id}_output.jsonl"

    stats = sim.stats()
    assert stats["calls"]["batches.create"] == 1 and stats["calls"]["files.create"] == 1
    assert stats["objects"][batch.id]["kind"] == "batch"
    assert stats["objects"][batch.id]["status"] == "completed"
    assert stats["creates_by_run_id"] == {str(i): 1 for i in range(50)}
    assert set(stats["batch_lines_by_custom_id"].values()) == {1}


def test_a_batch_without_failures_has_no_error_file(client: OpenAI, sim: RunningSimulator) -> None:
    sim.configure(**QUICK)
    batch = _finished(client, _submit(client, [_line("a"), _line("b")]).id)
    assert batch.status == "completed" and batch.error_file_id is None
    assert len(_rows(client, batch.output_file_id)) == 2


# --- expiry, cancel, validation -----------------------------------------------------------------


def test_a_batch_past_its_scaled_24h_expires_with_the_rest_in_the_error_file(
    client: OpenAI, sim: RunningSimulator
) -> None:
    sim.configure(time_scale=1.0 / 86400, batch_validating_s=0.1, batch_duration_s=4.0)
    created = _submit(client, [_line(f"r{i}") for i in range(40)])
    assert created.expires_at is not None and created.expires_at - created.created_at <= 1
    batch = _finished(client, created.id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert batch.completed_at is None and batch.finalizing_at is None
    output, errors = _rows(client, batch.output_file_id), _rows(client, batch.error_file_id)
    assert len(output) + len(errors) == 40 and errors
    assert {row["error"]["code"] for row in errors} == {"batch_expired"}
    assert all(row["response"] is None for row in errors)
    assert batch.request_counts is not None and batch.request_counts.completed == len(output)


def test_batch_force_expired_and_failed(client: OpenAI, sim: RunningSimulator) -> None:
    sim.configure(**QUICK, batch_force="expired")
    expired = _finished(client, _submit(client, [_line(f"r{i}") for i in range(20)]).id)
    assert expired.status == "expired"
    assert {row["error"]["code"] for row in _rows(client, expired.error_file_id)} == {
        "batch_expired"
    }
    sim.configure(batch_force="failed")
    failed = _finished(client, _submit(client, [_line("r")]).id)
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data
    # A batch's metadata pins its own end, whatever the config says.
    sim.configure(batch_force=None)
    pinned = _submit(client, [_line("r")], metadata={"sim_outcome": "failed"})
    assert _finished(client, pinned.id).status == "failed"


def test_cancel_keeps_what_ran_and_cancels_the_rest(client: OpenAI, sim: RunningSimulator) -> None:
    sim.configure(batch_validating_s=0.05, batch_duration_s=3.0, batch_cancel_lag_s=0.2)
    created = _submit(client, [_line(f"r{i}") for i in range(30)])
    wait_for(
        lambda: client.batches.retrieve(created.id),
        lambda b: b.request_counts is not None and b.request_counts.completed >= 3,
    )
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert client.batches.cancel(created.id).status == "cancelling"  # a repeat changes nothing
    batch = _finished(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    output, errors = _rows(client, batch.output_file_id), _rows(client, batch.error_file_id)
    assert len(output) >= 3 and len(output) + len(errors) == 30
    assert {row["error"]["code"] for row in errors} == {"batch_cancelled"}
    with pytest.raises(openai.BadRequestError, match="cancelled"):
        client.batches.cancel(created.id)
    assert sim.stats()["objects"][created.id]["cancel"] == 3


def test_an_invalid_input_file_fails_validation_listing_its_lines(
    client: OpenAI, sim: RunningSimulator
) -> None:
    sim.configure(**QUICK)
    rows: list[Any] = [
        _line("ok-1"),
        "{not json",
        {"method": "POST", "url": "/v1/responses", "body": {"model": "gpt-4o", "input": "x"}},
        _line("ok-1"),
        {**_line("wrong-url"), "url": "/v1/chat/completions"},
        _line("tiny-cap", max_output_tokens=5),
        _line("other-model", model="gpt-4.1"),
        _line("ok-2"),
    ]
    created = _submit(client, rows)
    assert created.status == "validating"
    batch = _finished(client, created.id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.in_progress_at is None and batch.output_file_id is None
    assert batch.error_file_id is None
    assert batch.request_counts is not None and batch.request_counts.total == 0
    assert batch.errors is not None
    by_line = {error.line: (error.code, error.param) for error in batch.errors.data or []}
    assert by_line == {
        2: ("invalid_json_line", None),
        3: ("missing_required_parameter", "custom_id"),
        4: ("duplicate_custom_id", "custom_id"),
        5: ("invalid_url", "url"),
        6: ("integer_below_min_value", "body.max_output_tokens"),
        7: ("mismatched_model", "body.model"),
    }
    assert sim.stats()["creates_by_run_id"] == {}  # nothing ran


def test_batch_create_errors(client: OpenAI) -> None:
    file_id = _upload(client, [_line("a")])
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/responses",
            completion_window="48h",  # type: ignore[arg-type]
        )
    with pytest.raises(openai.BadRequestError, match="file-missing"):
        client.batches.create(
            input_file_id="file-missing", endpoint="/v1/responses", completion_window="24h"
        )
    other = client.files.create(file=("notes.jsonl", b"{}\n"), purpose="user_data").id
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(
            input_file_id=other, endpoint="/v1/responses", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")


def test_list_is_newest_first_and_pages_with_after(client: OpenAI, sim: RunningSimulator) -> None:
    sim.configure(**QUICK)
    ids = [_submit(client, [_line("a")]).id for _ in range(5)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # auto-paging
    payload = client.batches.with_raw_response.list(limit=3).http_response.json()
    assert_schema("ListBatchesResponse", _without_nulls(payload))


# --- batch.* webhooks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how,event_class",
    [
        ("completed", BatchCompletedWebhookEvent),
        ("failed", BatchFailedWebhookEvent),
        ("expired", BatchExpiredWebhookEvent),
        ("cancelled", BatchCancelledWebhookEvent),
    ],
)
def test_batch_events_are_signed_and_unwrapped_by_the_sdk(
    client: OpenAI, sim: RunningSimulator, how: str, event_class: type[BaseModel]
) -> None:
    with Receiver() as receiver:
        sim.configure(**QUICK, webhook_url=receiver.url, webhook_secret=SECRET)
        metadata = {"sim_outcome": how} if how in ("failed", "expired") else {}
        batch = _submit(client, [_line(f"r{i}") for i in range(10)], metadata=metadata)
        if how == "cancelled":
            client.batches.cancel(batch.id)
        (delivery,) = wait_for(receiver.received, lambda got: len(got) == 1)
        event = client.webhooks.unwrap(delivery.body, delivery.headers, secret=SECRET)
        assert isinstance(event, event_class) and event.type == f"batch.{how}"
        assert event.data.id == batch.id
        assert_schema(f"WebhookBatch{how.capitalize()}", json.loads(delivery.body))
        ended = client.batches.retrieve(batch.id)  # the files exist once the event is sent
        assert ended.status == how
        if how != "failed":
            assert ended.output_file_id or ended.error_file_id


def test_registered_endpoints_and_fault_knobs_apply_to_batch_events(
    client: OpenAI, sim: RunningSimulator
) -> None:
    with Receiver() as receiver, Receiver() as registered:
        sim.configure(
            **QUICK, webhook_url=receiver.url, webhook_secret=SECRET, webhook_duplicate_rate=1.0
        )
        endpoint = client.webhooks.create(
            name="batches", url=registered.url, event_types=["batch.completed"]
        )
        ignoring = client.webhooks.create(
            name="responses only", url=registered.url, event_types=["response.completed"]
        )
        assert ignoring.id != endpoint.id
        batch = _submit(client, [_line("a")])
        first, second = wait_for(receiver.received, lambda got: len(got) == 2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]  # a duplicate
        got = wait_for(registered.received, lambda got: len(got) == 2)
        event = client.webhooks.unwrap(got[0].body, got[0].headers, secret=endpoint.signing_secret)
        assert event.type == "batch.completed" and event.data.id == batch.id
        counters = sim.stats(objects=False)["webhooks"]
        assert counters["events"] == 1 and counters["duplicates"] == 2
