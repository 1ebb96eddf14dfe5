"""Every API call has a total deadline of our own (runs/client.py), whatever the Celery pool.

Through the real SDK and real HTTP to the simulator, whose trickle fault sends the headers at once
and then the body a few bytes at a time: every single read is quick, so httpx2's per-phase timeouts
never fire (tests/simulator/test_faults.py shows the bare SDK waiting a trickle out), and only the
call's own deadline stops it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx2
import openai
import pytest

from runs import client as client_module
from runs.client import get_client, get_create_client
from runs.errors import classify

if TYPE_CHECKING:
    from runs_simulator.testing import RunningSimulator

DEADLINE_S = 1.0  # OPENAI_TIMEOUT_S in these tests
CREATE_DEADLINE_S = 4.0  # OPENAI_CREATE_TIMEOUT_S
#: A trickle far longer than any bound asserted here: a call that waited it out would show.
LONG_TRICKLE_S = 30.0


@pytest.fixture
def sim(settings, simulator: RunningSimulator) -> Iterator[RunningSimulator]:
    """The shared simulator, with clients built for short deadlines; faults and clients undone."""
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_TIMEOUT_S = DEADLINE_S
    settings.OPENAI_CREATE_TIMEOUT_S = CREATE_DEADLINE_S
    get_client.cache_clear()
    get_create_client.cache_clear()
    before = simulator.config()
    yield simulator
    touched = ("fault_trickle_rate", "trickle_s", "trickle_interval_s", "fault_only")
    simulator.configure(**{key: before[key] for key in touched})
    get_client.cache_clear()
    get_create_client.cache_clear()


def _trickle(sim: RunningSimulator, kind: str, total_s: float, interval_s: float) -> None:
    sim.configure(
        fault_trickle_rate=1.0, trickle_s=total_s, trickle_interval_s=interval_s, fault_only=[kind]
    )


def test_trickled_retrieve_times_out_at_the_deadline_and_is_retried(sim: RunningSimulator) -> None:
    created = get_create_client().responses.create(model="gpt-4o", input="x", background=True)
    # Pieces every 0.2 s: each read waits far less than the 1 s per-phase read timeout.
    _trickle(sim, "responses.retrieve", LONG_TRICKLE_S, 0.2)
    trickles = sim.stats(objects=False)["faults"]["trickle"]

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as info:
        get_client().responses.retrieve(created.id)
    elapsed = time.monotonic() - started

    assert DEADLINE_S * 0.9 <= elapsed < 3 * DEADLINE_S  # a hang bound, not a benchmark
    assert sim.stats(objects=False)["faults"]["trickle"] == trickles + 1
    decision = classify(info.value, 0)
    assert decision.retry and decision.code == "timeout" and decision.outcome_unknown
    # Nothing of the spent deadline stays behind: the next call on the same pool gets its own.
    assert client_module._DEADLINE.get() is None
    sim.configure(fault_trickle_rate=0.0)
    assert get_client().responses.retrieve(created.id).id == created.id


def test_no_read_waits_past_the_deadline(sim: RunningSimulator) -> None:
    """Reads are cut at the time left, not at the per-phase timeout.

    A piece every 0.9 s: the first read returns at 0.9 s with 0.1 s left. Checking the deadline
    only between chunks would wait for the next piece (1.8 s); the read itself must give up at 1 s.
    """
    created = get_create_client().responses.create(model="gpt-4o", input="x", background=True)
    _trickle(sim, "responses.retrieve", LONG_TRICKLE_S, 0.9)

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        get_client().responses.retrieve(created.id)
    assert time.monotonic() - started < 1.5


def test_create_client_keeps_its_longer_budget(sim: RunningSimulator) -> None:
    """A create trickling for 2 s: past OPENAI_TIMEOUT_S (1 s), within OPENAI_CREATE_TIMEOUT_S."""
    _trickle(sim, "responses.create", 2.0, 0.2)
    trickles = sim.stats(objects=False)["faults"]["trickle"]

    started = time.monotonic()
    created = get_create_client().responses.create(
        model="gpt-4o", input="x", background=True, metadata={"run_id": "deadline-create"}
    )
    elapsed = time.monotonic() - started

    assert 1.8 <= elapsed < CREATE_DEADLINE_S
    assert created.metadata == {"run_id": "deadline-create"}
    assert sim.stats(objects=False)["faults"]["trickle"] == trickles + 1


def test_both_clients_share_one_pool_behind_the_deadline_transport(sim: RunningSimulator) -> None:
    """Also the tripwire for the one httpcore2 internal we rely on (the pool's network backend)."""
    http_client = get_client()._client
    assert get_create_client()._client is http_client
    transport = http_client._transport
    assert isinstance(transport, client_module.DeadlineTransport)
    assert isinstance(transport._pool._network_backend, client_module._DeadlineBackend)


@pytest.mark.parametrize(
    ("timeout", "budget"),
    [
        (httpx2.Timeout(10.0), 10.0),
        (httpx2.Timeout(30.0, connect=5.0), 30.0),
        (httpx2.Timeout(None), None),
        (httpx2.Timeout(10.0, read=None), None),
    ],
)
def test_the_budget_is_the_timeout_the_sdk_sent(timeout: httpx2.Timeout, budget: float | None):
    request = httpx2.Request(
        "GET", "http://127.0.0.1/v1/x", extensions={"timeout": timeout.as_dict()}
    )
    assert client_module._total_budget(request) == budget
