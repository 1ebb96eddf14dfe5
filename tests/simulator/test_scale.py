"""10,000 live objects stay cheap: every operation is a dict lookup, status is lazy."""

from __future__ import annotations

import time

from simulator import response_service
from simulator.api_control import snapshot
from simulator.config import SimConfig
from simulator.responses import render
from simulator.state import SimState


def test_ten_thousand_live_responses_are_cheap() -> None:
    state = SimState(SimConfig(), seed=1)
    started = time.perf_counter()
    ids = [
        response_service.create(
            state,
            {
                "model": "gpt-4o",
                "input": f"q{n}",
                "background": True,
                "metadata": {"run_id": f"r{n}", "sim_duration_s": "60"},
            },
        ).id
        for n in range(10_000)
    ]
    created = time.perf_counter() - started
    started = time.perf_counter()
    for response_id in ids[:2000]:
        render(response_service.retrieve(state, response_id), state.now())
    per_retrieve = (time.perf_counter() - started) / 2000
    assert created < 5.0
    assert per_retrieve < 0.001, f"{per_retrieve * 1e6:.0f} us per retrieve"
    stats = snapshot(state)
    assert len(stats["objects"]) == 10_000 and len(stats["creates_by_run_id"]) == 10_000
