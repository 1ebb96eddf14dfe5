"""Child processes of a benchmark: Celery workers, the uvicorn web app, blocking runners.

Every child is registered on an ``ExitStack`` the moment it starts, so a failure or Ctrl-C stops
it; stopping is TERM, then KILL after a grace period. Readiness is checked for real (a Celery
``ping`` answered by that worker, a TCP connect to the web port), never by sleeping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from runs_dev.processes import (
    WEB_SERVERS,
    ChildFailed,
    beat_args,
    stop,
    uvicorn_args,
    wait_for_port,
)

from .topology import Role

ROOT = Path(__file__).resolve().parent.parent

#: The web processes' event loop in every scenario: the one the demo extra installs and uvicorn
#: then picks by itself, named so a result says what it measured.
WEB_SERVER = "uvloop"
#: The loops the bench may name (``--web-loop``): every one but uvicorn's unnamed "auto".
WEB_LOOPS = tuple(loop for loop in WEB_SERVERS if loop != "auto")


def spawn(
    stack: ExitStack,
    args: list[str],
    env: dict[str, str],
    log: Path | None = None,
    *,
    nice: int = 0,
) -> subprocess.Popen[bytes]:
    """Start ``python args...`` in the project root; stopped when ``stack`` closes.

    Output goes to ``log`` when given (worker banners would break the progress bar). ``nice``
    lowers the child's CPU priority from its start, so every thread it makes inherits it.
    """
    out = stack.enter_context(open(log, "ab")) if log else None  # noqa: SIM115 - closed by stack
    # nice(1) execs the command, so the pid watched and stopped is the child's own.
    prefix = ["nice", "-n", str(nice)] if nice else []
    process = subprocess.Popen(
        [*prefix, sys.executable, *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
    )
    stack.callback(stop, process)
    return process


def start_workers(
    stack: ExitStack,
    env: dict[str, str],
    *,
    workers: int,
    threads: int,
    tag: str,
    logdir: Path,
    roles: Sequence[Role] = (),
) -> list[tuple[subprocess.Popen[bytes], str]]:
    """``workers`` Celery worker processes (threads pool, ``threads`` slots each).

    ``roles`` (``bench/topology.py``), one per worker, say which queues each consumes, at which
    CPU priority and chunk; without them every worker consumes every queue.
    """
    roles = list(roles) or [Role("all")] * workers
    return [
        start_node(
            stack,
            env,
            hostname=f"{tag}-{role.name}-{i}@bench",
            threads=threads,
            logdir=logdir,
            role=role,
        )
        for i, role in enumerate(roles)
    ]


def start_node(
    stack: ExitStack,
    env: dict[str, str],
    *,
    hostname: str,
    threads: int,
    logdir: Path,
    role: Role | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """One Celery worker process named ``hostname`` (a node).

    Without a role's ``-Q``, a worker consumes every queue the project declares (its default
    queue and the ``RUNS_QUEUES`` of its ``RUNS_QUEUE_PREFIX``, from the child's own settings),
    so a bench never leaves a queue without a consumer.
    """
    role = role or Role("all")
    queues = ["-Q", ",".join(role.queues)] if role.queues else []
    if role.start_chunk is not None:
        env = {**env, "RUNS_START_CHUNK": str(role.start_chunk)}
    process = spawn(
        stack,
        [
            "-m", "celery", "-A", "bench.celery_app", "worker", "--pool", "threads",
            "--concurrency", str(threads), "--loglevel", "WARNING", "--without-gossip",
            "--without-mingle", "--without-heartbeat", "--hostname", hostname, *queues,
        ],
        env,
        logdir / f"{hostname}.log",
        nice=role.nice,
    )  # fmt: skip
    return process, hostname


def start_beat(stack: ExitStack, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    """Celery beat (the sweep; ``runs.poll_due`` in batched polling), its schedule file and log
    in ``workdir``; stopped with ``stack``."""
    return spawn(stack, beat_args(workdir), env, workdir / "beat.log")


def wait_workers(app: object, workers: list[tuple[subprocess.Popen[bytes], str]]) -> None:
    """Until every worker answers a ``ping`` (at most 60 s)."""
    pending = {hostname for _, hostname in workers}
    give_up = time.monotonic() + 60
    while pending and time.monotonic() < give_up:
        for process, hostname in workers:
            if process.poll() is not None:
                raise ChildFailed(f"worker {hostname} exited with code {process.returncode}")
        replies = app.control.ping(destination=sorted(pending), timeout=0.5)  # type: ignore[attr-defined]
        for reply in replies:
            pending -= set(reply)
    if pending:
        raise ChildFailed(f"workers did not answer a ping within 60 s: {sorted(pending)}")


def start_web(
    stack: ExitStack,
    env: dict[str, str],
    port: int,
    *,
    workers: int = 1,
    log: Path | None = None,
    server: str = WEB_SERVER,
    app: str = "project.asgi:application",
) -> subprocess.Popen[bytes]:
    """uvicorn serving ``app`` (``project.asgi`` with the bench URLconf unless named) on
    127.0.0.1:``port``, on the event loop ``runs_dev.processes.WEB_SERVERS[server]`` names."""
    process = spawn(stack, uvicorn_args(port, workers, server, app), env, log)
    wait_for_port(process, port, timeout=30)
    return process


def child_env(base: dict[str, str], **overrides: str) -> dict[str, str]:
    """The environment for a child: the bench's own plus ``overrides``."""
    env = {**os.environ, **base, **overrides}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
