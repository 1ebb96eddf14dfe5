"""Injected API faults: 429 with retry headers, 500, slow answers (lost answers), trickles."""

from __future__ import annotations

import socket
import time

import openai
import pytest
from openai import OpenAI

from runs_simulator.testing import RunningSimulator

from .helpers import assert_schema


def test_429_has_real_body_and_retry_headers_and_creates_nothing(
    client: OpenAI, sim: RunningSimulator
) -> None:
    sim.configure(fault_429_rate=1.0, retry_after_ms=1500)
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="gpt-4o", input="x", metadata={"run_id": "r-429"})
    error = info.value
    assert error.code == "rate_limit_exceeded"
    assert error.response.headers["retry-after"] == "2"
    assert error.response.headers["retry-after-ms"] == "1500"
    assert_schema("ErrorResponse", error.response.json())
    stats = sim.stats()
    assert (
        stats["faults"] == {"429": 1, "500": 0, "slow": 0, "trickle": 0} and stats["objects"] == {}
    )
    assert stats["creates_by_run_id"] == {} and stats["calls"]["responses.create"] == 1


def test_500_is_internal_server_error_and_creates_nothing(
    client: OpenAI, sim: RunningSimulator
) -> None:
    sim.configure(fault_500_rate=1.0)
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.create(model="gpt-4o", input="x", metadata={"run_id": "r-500"})
    assert info.value.status_code == 500
    assert_schema("ErrorResponse", info.value.response.json())
    assert sim.stats()["objects"] == {}


def test_slow_answer_times_out_but_object_exists(client: OpenAI, sim: RunningSimulator) -> None:
    sim.configure(fault_slow_rate=1.0, slow_s=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).responses.create(
            model="gpt-4o", input="x", background=True, metadata={"run_id": "r-slow"}
        )
    sim.configure(fault_slow_rate=0.0)
    stats = sim.stats()
    assert stats["faults"] == {"429": 0, "500": 0, "slow": 1, "trickle": 0}
    assert stats["creates_by_run_id"] == {"r-slow": 1}
    (response_id,) = stats["objects"]
    assert client.responses.retrieve(response_id).metadata == {"run_id": "r-slow"}


def test_trickle_sends_headers_at_once_then_the_body_in_pieces(sim: RunningSimulator) -> None:
    """Every gap between pieces is short, the whole answer is long: what per-read timeouts miss."""
    sim.configure(fault_trickle_rate=1.0, trickle_s=1.0, trickle_interval_s=0.1)
    host, port = sim.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"GET /v1/responses/resp_missing HTTP/1.1\r\nHost: sim\r\n"
            b"Authorization: Bearer sk-sim\r\nConnection: close\r\n\r\n"
        )
        received, arrivals = b"", []
        while piece := conn.recv(65536):
            received += piece
            arrivals.append(time.monotonic())
    head, _, body = received.partition(b"\r\n\r\n")
    assert (
        head.startswith(b"HTTP/1.1 404") and b"content-length: " + str(len(body)).encode() in head
    )
    assert arrivals[0] - started < 0.5  # the status line and headers did not wait
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) > 5 and max(gaps) < 0.5  # no single read waits long...
    assert arrivals[-1] - started >= 0.9  # ...but the answer takes trickle_s
    assert sim.stats()["faults"]["trickle"] == 1


def test_trickled_answer_outlives_the_sdk_timeout_and_arrives_whole(
    client: OpenAI, sim: RunningSimulator
) -> None:
    """httpx2's timeouts bound each read, not the call: the SDK alone waits the trickle out."""
    created = client.responses.create(model="gpt-4o", input="x", metadata={"run_id": "r-tr"})
    sim.configure(
        fault_trickle_rate=1.0,
        trickle_s=1.0,
        trickle_interval_s=0.1,
        fault_only=["responses.retrieve"],
    )
    started = time.monotonic()
    retrieved = client.with_options(timeout=0.5).responses.retrieve(created.id)
    assert time.monotonic() - started >= 0.9
    assert retrieved.id == created.id and retrieved.metadata == {"run_id": "r-tr"}
    assert sim.stats()["faults"]["trickle"] == 1


def test_fault_only_limits_faults_to_listed_call_kinds(
    client: OpenAI, sim: RunningSimulator
) -> None:
    created = client.responses.create(model="gpt-4o", input="x")
    sim.configure(fault_500_rate=1.0, fault_only=["responses.create"])
    assert client.responses.retrieve(created.id).id == created.id
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="gpt-4o", input="x")


def test_control_plane_is_never_faulted_and_reset_restores_config(sim: RunningSimulator) -> None:
    sim.configure(fault_500_rate=1.0)
    assert sum(sim.stats()["faults"].values()) == 0
    sim.reset()
    assert sim.config()["fault_500_rate"] == 0.0
    sim.configure(fault_500_rate=0.5)
    sim.reset(keep_config=True)
    assert sim.config()["fault_500_rate"] == 0.5


def test_bad_config_is_rejected(sim: RunningSimulator) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as info:
        sim.configure(no_such_key=1)
    assert info.value.code == 400
    with pytest.raises(urllib.error.HTTPError):
        sim.configure(fault_429_rate=2)
    with pytest.raises(urllib.error.HTTPError):
        sim.configure(fault_trickle_rate=-0.1)
    with pytest.raises(urllib.error.HTTPError):
        sim.configure(trickle_interval_s=0)
