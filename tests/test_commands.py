"""The management commands as a user meets them: startrun --wait, runstatus, exit codes."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.models import Run

pytestmark = pytest.mark.integration


def startrun(*args: str) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("startrun", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc.returncode
    return out.getvalue(), 0


def test_startrun_wait_prints_each_change_and_the_output(worker, simulator):
    out, code = startrun(
        "hi", "--wait", "--metadata", "sim_duration_s=1", "--metadata", "sim_outcome=completed"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("run ") and "created" in lines[0]
    assert [line.split("  ")[1] for line in lines[1:4]] == [
        "pending -> queued",
        "queued -> in_progress",
        "in_progress -> completed",
    ]
    assert lines[-1] == "output: Simulated answer to: hi"


def test_startrun_wait_exits_1_when_the_run_does_not_complete(worker, simulator):
    out, code = startrun(
        "hi", "--wait", "--metadata", "sim_duration_s=0.5", "--metadata", "sim_outcome=failed"
    )
    assert code == 1
    assert "in_progress -> failed" in out or "queued -> failed" in out
    assert "error (" in out


def test_runstatus_shows_the_timeline(worker, simulator, wait_terminal):
    out, _ = startrun(
        "status please", "--metadata", "sim_duration_s=0.5", "--metadata", "sim_outcome=completed"
    )
    run_id = int(out.split()[1])
    wait_terminal(run_id)
    text = io.StringIO()
    call_command("runstatus", str(run_id), stdout=text)
    shown = text.getvalue()
    assert f"run {run_id}: completed" in shown
    assert "pending -> queued (create)" in shown
    assert Run.objects.get(pk=run_id).remote_id in shown
