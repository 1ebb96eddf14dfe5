"""The chaos driver's own parts, without processes: what it reads and what it counts.

The driver kills a worker only once the worker said it is ready and has taken work, so the
probe it reads must be exact; its workload must ask the simulator for tool calls the way the
simulator understands; and a tool round (one more create on the Responses API) must not be
counted as a duplicate create.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.signals import task_prerun, worker_ready

from runs.models import ToolCall
from runs_dev import worker_probe
from runs_dev.chaos import TOOL, ChaosConfig, duplicate_creates, workload
from runs_dev.worker_probe import PROBE_DIR_ENV, WorkerProbe


@pytest.fixture
def probed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerProbe]:
    """This process as a worker started with a probe directory (signals connected, then not)."""
    monkeypatch.setenv(PROBE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(worker_probe, "_tasks_fd", None)
    worker_probe.install()
    yield WorkerProbe(tmp_path)
    worker_ready.disconnect(dispatch_uid="runs_dev.probe.ready")
    task_prerun.disconnect(dispatch_uid="runs_dev.probe.task")
    if worker_probe._tasks_fd is not None:
        os.close(worker_probe._tasks_fd)


def test_a_probed_worker_reports_ready_then_each_task_it_starts(probed):
    pid = os.getpid()
    assert not probed.is_ready(pid) and probed.tasks_started(pid) == 0
    worker_ready.send(sender=None)
    assert probed.is_ready(pid) and probed.tasks_started(pid) == 0
    for _ in range(3):
        task_prerun.send(sender=None)
    assert probed.tasks_started(pid) == 3
    # Another worker (another pid) has reported nothing.
    assert not probed.is_ready(pid + 1) and probed.tasks_started(pid + 1) == 0


def test_without_a_probe_directory_a_worker_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(PROBE_DIR_ENV, raising=False)
    worker_probe.install()
    worker_ready.send(sender=None)
    assert list(tmp_path.iterdir()) == []


def test_the_tool_share_asks_the_simulator_for_one_or_two_rounds_of_add():
    plans = workload(ChaosConfig(runs=24, tool_share=0.3))
    tool_plans = [p for p in plans if p["tools"]]
    assert len(tool_plans) == 7
    for plan in tool_plans:
        meta = plan["metadata"]
        assert plan["tools"] == [TOOL] and meta["sim_outcome"] == "completed"
        assert meta["sim_tool_rounds"] in ("1", "2")
        assert set(json.loads(meta["sim_tool_args"])) == {"a", "b"}
    assert not any(p["tools"] for p in workload(ChaosConfig(runs=24)))


def test_tool_rounds_are_not_duplicate_creates_but_a_doubled_first_create_is(make_run):
    with_tools, plain = make_run("requires_action"), make_run("queued")
    for round_no, call_id in enumerate(["call_1", "call_2"], start=1):
        ToolCall.objects.create(run=with_tools, call_id=call_id, name=TOOL, round=round_no)
    stats = {
        # The first create plus one per answered round; the second round answered twice.
        "creates_by_run_id": {str(with_tools.pk): 4, str(plain.pk): 2},
        "tool_outputs_by_call_id": {"call_1": 1, "call_2": 2},
    }
    assert duplicate_creates([with_tools, plain], stats) == {plain.pk: 1}
    stats["creates_by_run_id"][str(with_tools.pk)] = 5
    assert duplicate_creates([with_tools, plain], stats) == {with_tools.pk: 1, plain.pk: 1}
