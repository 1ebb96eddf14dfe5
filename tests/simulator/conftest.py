"""Fixtures: one simulator process for the whole session, reset before each test.

Why session-scoped: starting a process costs ~0.5 s; resetting state is a single cheap
call, and restores the startup config so a test's faults never leak into the next one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from runs_simulator.testing import RunningSimulator


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSimulator]:
    """The running simulator (seeded, with a poll hint and short run expiry default)."""
    with RunningSimulator(seed=1234, poll_after_ms=250) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(sim: RunningSimulator) -> None:
    sim.reset()


@pytest.fixture()
def client(sim: RunningSimulator) -> OpenAI:
    """The real SDK, pointed at the simulator, without SDK-side retries."""
    return OpenAI(base_url=sim.base_url, api_key="sk-sim", max_retries=0)
