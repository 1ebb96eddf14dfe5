"""10,000 live objects: each one a dict entry whose status is computed when read.

No timer or task per object and no scan on a read, which is what keeps a large simulation cheap.
How fast that is belongs to a benchmark, not to a test: nothing here is timed.
"""

from __future__ import annotations

from runs_simulator import response_service
from runs_simulator.api_control import snapshot
from runs_simulator.config import SimConfig
from runs_simulator.responses import render
from runs_simulator.state import SimState


def test_ten_thousand_live_responses_are_held_and_their_status_is_computed_when_read() -> None:
    state = SimState(SimConfig(), seed=1)
    ids = [
        response_service.create(
            state,
            {
                "model": "gpt-4o",
                "input": f"q{n}",
                "background": True,
                "metadata": {"run_id": f"r{n}", "sim_duration_s": "60", "sim_outcome": "completed"},
            },
        ).id
        for n in range(10_000)
    ]
    assert len(set(ids)) == 10_000
    # Nothing runs in the background: the same records read as running now, finished later.
    read = [response_service.retrieve(state, response_id) for response_id in ids[:2000]]
    now = state.now()  # after every create: each one planned to take 60 s from its own
    assert {render(r, now)["status"] for r in read} <= {"queued", "in_progress"}
    assert {render(r, now + 61)["status"] for r in read} == {"completed"}
    # A retrieve touches its own object only.
    stats = snapshot(state)
    assert len(stats["objects"]) == 10_000 and len(stats["creates_by_run_id"]) == 10_000
    retrieves = [stats["objects"][response_id]["retrieve"] for response_id in ids]
    assert retrieves == [1] * 2000 + [0] * 8000
