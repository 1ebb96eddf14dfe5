"""A Celery app for the recovery tests: the project's app with one *kill point* installed.

A worker started with ``celery -A tests.kill_points worker`` and ``RUNS_TEST_KILL_POINT`` set
stops dead at that point of a tool round (it writes ``RUNS_TEST_KILL_FLAG`` and blocks), so the
test can SIGKILL it exactly there, as a crash would:

- ``after_claim``: the round's submit claim is taken, the request has not left;
- ``after_submit``: the server has the outputs, the answer is not saved;
- ``batch_after_create``: a batch is created at OpenAI, its remote id is not saved;
- ``batch_mid_settle``: a batch's first chunk of runs is settled, the rest are not.

Test tooling only: the runtime app knows nothing of it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from celery.signals import worker_ready

from project.celery import app

__all__ = ["app"]


def _hold() -> None:
    Path(os.environ["RUNS_TEST_KILL_FLAG"]).write_text("holding")
    threading.Event().wait()  # until the test's SIGKILL


@worker_ready.connect
def install_kill_point(**_: Any) -> None:
    point = os.environ.get("RUNS_TEST_KILL_POINT", "")
    if point == "after_claim":
        from runs.engine import tool_calls

        claim = tool_calls.next_step

        def next_step(run_id: int, round_no: int) -> tool_calls.RoundState:
            decided = claim(run_id, round_no)
            if decided.step is tool_calls.Step.SUBMIT:
                _hold()
            return decided

        tool_calls.next_step = next_step
    elif point == "after_submit":
        from runs.backends.responses import ResponsesBackend

        submit = ResponsesBackend.submit_tool_outputs

        def submit_then_die(self: ResponsesBackend, *args: Any, **kwargs: Any) -> Any:
            submit(self, *args, **kwargs)
            _hold()

        ResponsesBackend.submit_tool_outputs = submit_then_die  # type: ignore[method-assign]
    elif point == "batch_after_create":
        from runs.backends import batch_api

        create = batch_api.create

        def create_then_die(*args: Any, **kwargs: Any) -> Any:
            create(*args, **kwargs)
            _hold()

        batch_api.create = create_then_die
    elif point == "batch_mid_settle":
        from runs.engine import batch_runs
        from runs.status import TERMINAL

        move_many = batch_runs.move_many

        def settle_one_chunk_then_die(*args: Any, **kwargs: Any) -> Any:
            moved = move_many(*args, **kwargs)
            if any(to in TERMINAL for _, _, to in moved):
                _hold()
            return moved

        batch_runs.move_many = settle_one_chunk_then_die
    elif point:
        raise ValueError(f"unknown RUNS_TEST_KILL_POINT {point!r}")
