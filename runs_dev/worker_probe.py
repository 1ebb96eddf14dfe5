"""Let a driver see, through files, when a worker it started is ready and how much work it took.

The chaos run must kill a worker only once it consumes and has done something: a worker killed
while still importing Django proves nothing and, every two seconds, starves every run. Asking
the broker (``celery inspect ping``) costs a process per question and breaks when Redis is
flushed (the flush drops the worker's broadcast binding); a worker's log line is not an API.
Celery's own signals, written to files, are exact and cost nothing:

- ``<dir>/<pid>.ready`` appears on ``worker_ready`` (the consumer has started);
- ``<dir>/<pid>.tasks`` grows by one byte per task the worker starts (``task_prerun``); one
  ``O_APPEND`` write per task is atomic, so its size is the count, never a torn number.

Only a worker whose environment names the directory (``RUNS_DEV_WORKER_PROBE_DIR``) writes
anything; ``RunsDevConfig.ready()`` calls ``install()`` in every process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from celery.signals import task_prerun, worker_ready

PROBE_DIR_ENV = "RUNS_DEV_WORKER_PROBE_DIR"

_lock = threading.Lock()
_tasks_fd: int | None = None


def install() -> None:
    """Connect the signal handlers when this process is a worker started with a probe dir."""
    if not os.environ.get(PROBE_DIR_ENV):
        return
    worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="runs_dev.probe.ready")
    task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="runs_dev.probe.task")


def _path(suffix: str) -> Path:
    return Path(os.environ[PROBE_DIR_ENV]) / f"{os.getpid()}.{suffix}"


def _on_worker_ready(**kwargs: Any) -> None:
    _path("ready").touch()


def _on_task_prerun(**kwargs: Any) -> None:
    global _tasks_fd
    with _lock:  # threads pool: open the file once
        if _tasks_fd is None:
            _tasks_fd = os.open(_path("tasks"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(_tasks_fd, b".")


class WorkerProbe:
    """The driver's side: what the workers started with ``env()`` have reported."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def env(self) -> dict[str, str]:
        """The variable to add to a worker's environment."""
        return {PROBE_DIR_ENV: str(self.directory)}

    def is_ready(self, pid: int) -> bool:
        return (self.directory / f"{pid}.ready").exists()

    def tasks_started(self, pid: int) -> int:
        try:
            return (self.directory / f"{pid}.tasks").stat().st_size
        except FileNotFoundError:
            return 0
