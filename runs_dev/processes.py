"""Child processes for the demo, the chaos run and the benchmarks: worker, beat, web server.

Development tooling, not used by the app at run time. Every process started here is meant to be
stopped by the caller (``stop``), also on Ctrl-C, so nothing outlives the command.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from project.celery import app as celery_app
from project.localredis import free_port
from runs.client import get_client, get_create_client


class ChildFailed(RuntimeError):
    pass


def database_url() -> str:
    """The URL of the database this process uses *now* (under pytest: the test database)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        auth = quote(s.get("USER") or "")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"])
        host = s.get("HOST") or "127.0.0.1"
        port = s.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{s['NAME']}"
    raise ChildFailed(f"cannot hand a {connection.vendor} database to a child process")


#: The kinds of work the engine routes (``runs.engine.enqueue.KINDS``), as the project names them.
KINDS = ("start", "poll", "wake", "tool")


def private_queues(queue: str) -> dict[str, str]:
    """``RUNS_QUEUES`` for a private deployment named ``queue``: ``<queue>.starts`` and so on,
    the project's naming (``RUNS_QUEUE_PREFIX``) with ``queue`` as the prefix."""
    return {kind: f"{queue}.{kind}s" for kind in KINDS}


def start_worker(
    env: Mapping[str, str],
    *,
    concurrency: int,
    queue: str,
    loglevel: str = "WARNING",
    app: str = "project",
    kinds: Sequence[str] | None = None,
) -> subprocess.Popen[bytes]:
    """A Celery worker (threads pool: polls are short and I/O-bound) for the private deployment
    ``queue``: it consumes ``queue`` (the default queue: the sweep) and the queue of every kind,
    or only the queues of ``kinds`` (``("wake",)``: a dedicated wake worker). ``app`` is the
    Celery app module (tests pass one that adds a kill point).

    The child routes by the same names (``RUNS_QUEUE_PREFIX=queue``), as does this process
    inside ``pointed_at``, so two deployments on one broker never take each other's tasks.
    """
    named = private_queues(queue)
    # The project's order (project/settings.py, CELERY_TASK_QUEUES): wakes first, starts last.
    everything = [named["wake"], queue, named["poll"], named["tool"], named["start"]]
    consumed = [named[kind] for kind in kinds] if kinds else everything
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            "--queues",
            ",".join(consumed),
            "--hostname",
            f"{queue}-{time.time_ns()}@%h",
        ],
        env={**env, "RUNS_QUEUE_PREFIX": queue},
        stdin=subprocess.DEVNULL,
    )


def start_beat(env: Mapping[str, str], schedule_dir: Path) -> subprocess.Popen[bytes]:
    """Celery beat (the recovery sweep), with its schedule file in ``schedule_dir``."""
    return subprocess.Popen(
        [sys.executable, *beat_args(schedule_dir)], env=dict(env), stdin=subprocess.DEVNULL
    )


def beat_args(schedule_dir: Path) -> list[str]:
    """``python`` arguments that run Celery beat with its schedule file in ``schedule_dir``."""
    return [
        "-m", "celery", "-A", "project", "beat", "--loglevel", "WARNING",
        "--schedule", str(schedule_dir / "celerybeat-schedule"),
    ]  # fmt: skip


#: uvicorn's event loop. "auto" is uvicorn's own choice (uvloop when installed, as the demo
#: extra does, else asyncio). On asyncio, ``--workers`` above 1 leaves Nagle's algorithm on every
#: accepted connection (the socket uvicorn binds for its workers says protocol 0, and asyncio sets
#: TCP_NODELAY only on sockets that say TCP), so each keep-alive request after the first waits
#: about 40 ms for the peer's delayed ACK; uvloop sets TCP_NODELAY on every TCP socket. The bench
#: names its loop, so a figure says what it measured, and compares the two (docs/operations.md,
#: "The web processes' event loop").
WEB_SERVERS: dict[str, tuple[str, ...]] = {
    "auto": (),
    "uvloop": ("--loop", "uvloop"),
    "asyncio": ("--loop", "asyncio"),
}


def uvicorn_args(
    port: int, workers: int = 1, server: str = "auto", app: str = "project.asgi:application"
) -> list[str]:
    """``python`` arguments that serve ``app`` (the demo project's ASGI application unless
    named) with uvicorn on 127.0.0.1:``port``, on the event loop ``WEB_SERVERS[server]`` names."""
    return [
        "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--workers", str(workers),
        *WEB_SERVERS[server],
    ]  # fmt: skip


def start_web(env: Mapping[str, str], timeout: float = 20.0) -> tuple[subprocess.Popen[bytes], str]:
    """The web app under uvicorn on a free port; (process, base URL) once it accepts."""
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, *uvicorn_args(port)],
        env=dict(env),
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(web, port, timeout)
    except ChildFailed:
        stop(web)
        raise
    return web, f"http://127.0.0.1:{port}"


def wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Return once ``process`` accepts connections on ``port``; ``ChildFailed`` if it exits or
    does not within ``timeout`` (readiness is checked for real, not guessed with a sleep)."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise ChildFailed(f"the web server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise ChildFailed(f"the web server did not start within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Warm shutdown first (a worker finishes its current tasks), then force."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as an OOM killer or a lost host would: no cleanup, nothing acknowledged."""
    if process.poll() is None:
        process.kill()
        process.wait()


@contextmanager
def pointed_at(*, broker_url: str, queue: str, openai_base_url: str) -> Iterator[None]:
    """Send this process's tasks to the private deployment ``queue`` (its default queue and
    ``private_queues(queue)``) on ``broker_url`` and its API calls to ``openai_base_url`` for a
    while, then put everything back (connection pools included)."""
    saved = (
        celery_app.conf.broker_url,
        celery_app.conf.task_default_queue,
        getattr(settings, "RUNS_QUEUES", None),
        settings.OPENAI_BASE_URL,
    )

    def apply(
        broker: str, default_queue: str, queues: dict[str, str] | None, base_url: str
    ) -> None:
        celery_app.conf.update(broker_url=broker, task_default_queue=default_queue)
        settings.RUNS_QUEUES = queues
        # Drop the app's pools (they hold connections to the old broker); the next publish takes
        # kombu's pool for the new URL. Not force_close_all(): kombu keeps pools per URL for the
        # process, so closing one breaks every later publish to that broker ("Acquire on closed
        # pool") once we point back at it.
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        settings.OPENAI_BASE_URL = base_url
        get_client.cache_clear()
        get_create_client.cache_clear()

    apply(broker_url, queue, private_queues(queue), openai_base_url)
    try:
        yield
    finally:
        apply(*saved)
