"""Helpers for the tests that drive runs through the real broker and worker with faults.

Not a test module and not a conftest: the ``*_through_broker`` and ``test_errors_in_a_tracked_run``
tests import what they need from here. The simulator is shared by the whole session, so every
fault a test turns on goes through ``faults()``, which turns it off again whatever happens, and
every count a test asserts is a difference, or is keyed by the test's own run or object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

from runs.models import Run

T = TypeVar("T")

#: A simulated run that is over quickly: short queue, short work, a known outcome.
QUICK = {"sim_queue_s": "0.05", "sim_duration_s": "0.3", "sim_outcome": "completed"}

#: The simulator's fault settings as it starts (``runs_simulator/config.py``): what ``faults()``
#: restores.
NO_FAULTS: dict[str, Any] = {
    "fault_429_rate": 0.0,
    "fault_500_rate": 0.0,
    "fault_slow_rate": 0.0,
    "fault_trickle_rate": 0.0,
    "fault_only": [],
    "retry_after_ms": 1000,
    "slow_s": 5.0,
    "trickle_s": 10.0,
    "trickle_interval_s": 0.5,
}


@contextmanager
def faults(simulator: Any, **config: Any) -> Iterator[None]:
    """Faults on for the block (``simulator.configure`` keys), off again after it."""
    simulator.configure(**config)
    try:
        yield
    finally:
        simulator.configure(**NO_FAULTS)


def remote(simulator: Any, run: Run) -> dict[str, Any]:
    """The simulator's row for the run's remote object: its call counts and its status."""
    return simulator.stats()["objects"][run.remote_id]


def creates(simulator: Any, run: Run) -> int:
    """How many remote objects the simulator created for this run (above 1: a duplicate)."""
    return simulator.stats()["creates_by_run_id"].get(str(run.pk), 0)


def calls_of(simulator: Any, kind: str) -> int:
    """Calls of one kind the simulator received so far, faulted ones included."""
    return simulator.stats(objects=False)["calls"].get(kind, 0)


def faults_served(simulator: Any, kind: str) -> int:
    """Faults of one kind (``"429"``, ``"500"``, ``"slow"``, ``"trickle"``) served so far."""
    return simulator.stats(objects=False)["faults"][kind]


def wait_for(check: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    """Wait (in the test) until ``check()`` is truthy and return it; the timeout only bounds a
    hang, it is never the thing asserted."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
