"""Webhook intake: signed events per second through our view, against a bare Django view.

Two measurements, each as a ratio to ``/bench/bare/`` measured the same way just before/after:

* **in-process**: requests handed straight to Django's ``WSGIHandler`` in this process, one at
  a time: no network, no server; the cost of Django + our view per event on one core.
* **over HTTP**: uvicorn serving ``project.asgi`` with 2 worker processes, loaded by several
  load-client processes (``bench.loadclient``) with keep-alive connections. Server and client
  share the same 2 cores, so the absolute figure understates a dedicated server; the ratio is
  fair because both views are measured alike. Measured on the event loop the scenarios use
  (uvloop) and, side by side, on the one uvicorn falls back to (asyncio), where ``--workers 2``
  leaves Nagle's algorithm on and each keep-alive request waits about 40 ms for a delayed ACK:
  that wait, not our view, was most of what the bare view cost there (docs/operations.md, "The
  web processes' event loop").

Every signed event names a real in-progress run, so the view does its whole job (verify, record,
wake: a poll task is enqueued to the private Redis, which no worker consumes here).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from project.localredis import free_port

from . import processes
from .events import delivery

WEBHOOK_PATH = "/webhooks/openai/"
BARE_PATH = "/bench/bare/"
#: The bare view on the intake's own path (bench/asgi.py).
BARE_WSGI_PATH = "/bench/bare-wsgi/"


def standalone(redis_url: str, db_url: str, queue: str) -> tuple[dict[str, str], str, list[str]]:
    """Set a standalone intake bench up (``bench.intake_path``, ``bench.intake_store``): Django
    on ``db_url`` with empty tables, no API reachable (the wakes are not consumed); the children's
    environment, a fresh webhook secret (this process's too) and 2,000 in-progress runs' ids."""
    import base64
    import secrets

    from django.conf import settings

    from .database import empty_tables
    from .standalone import point_at

    env = point_at(
        sim_url="http://127.0.0.1:9/v1",
        redis_url=redis_url,
        db_url=db_url,
        queue=queue,
        settings="bench.settings",
    )
    empty_tables()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    settings.OPENAI_WEBHOOK_SECRET = secret
    return env, secret, make_runs(2000)


def make_runs(count: int) -> list[str]:
    """``count`` in-progress webhook-strategy runs with remote ids; their remote ids."""
    from datetime import timedelta

    from django.utils import timezone

    from runs.models import Run, Thread

    thread = Thread.objects.create(remote_id="conv_intake")
    deadline = timezone.now() + timedelta(hours=1)
    ids = [f"resp_intake_{i:06d}" for i in range(count)]
    Run.objects.bulk_create(
        [
            Run(
                thread=thread,
                remote_id=rid,
                status="in_progress",
                strategy="webhook",
                model="gpt-4.1-mini",
                deadline_at=deadline,
            )
            for rid in ids
        ],
        batch_size=1000,
    )
    return ids


def _environ(path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": headers.get("content-type", "application/json"),
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        if name != "content-type":
            env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def _inprocess_rate(
    path: str, secret: str, object_ids: list[str], seconds: float, tag: str
) -> tuple[float, float]:
    """(requests per second, CPU ms per request): the CPU is this thread's inside the handler
    only, so signing the delivery (the sender's work) is not counted as the view's."""
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    statuses: list[str] = []

    def start_response(status: str, _headers: list[Any], *_: Any) -> None:
        statuses.append(status)

    done, ok, cpu = 0, 0, 0.0
    started = time.perf_counter()
    give_up = started + seconds
    while time.perf_counter() < give_up and done < 50_000:
        if path == WEBHOOK_PATH:
            body, headers = delivery(secret, f"wh_{tag}_{done}", object_ids[done % len(object_ids)])
        else:
            body, headers = b'{"plain": true}', {"content-type": "application/json"}
        environ = _environ(path, body, headers)
        cpu0 = time.thread_time()
        response = handler(environ, start_response)
        b"".join(response)
        response.close()
        cpu += time.thread_time() - cpu0
        ok += statuses[-1].startswith("200")
        done += 1
    elapsed = time.perf_counter() - started
    if ok != done:
        raise RuntimeError(f"{path}: {done - ok} of {done} in-process requests were not 200")
    return done / elapsed, 1000 * cpu / max(done, 1)


def inprocess(secret: str, object_ids: list[str], seconds: float, rounds: int) -> dict[str, Any]:
    """Alternate bare and signed rounds; the best round of each (least disturbed by neighbours)."""
    from django.conf import settings

    settings.OPENAI_WEBHOOK_SECRET = secret
    bare, signed = [], []
    for r in range(rounds):
        bare.append(_inprocess_rate(BARE_PATH, secret, object_ids, seconds, f"b{r}"))
        signed.append(_inprocess_rate(WEBHOOK_PATH, secret, object_ids, seconds, f"ip{r}"))
    measured = _ratio(
        [rate for rate, _ in bare],
        [rate for rate, _ in signed],
        "in-process through Django's WSGIHandler, one request at a time",
    )
    # The least CPU of the rounds, as the best rate: the round least disturbed by neighbours.
    measured["cpu_ms_per_request"] = {
        "bare": round(min(cpu for _, cpu in bare), 3),
        "signed": round(min(cpu for _, cpu in signed), 3),
    }
    return measured


def _http_rate(
    url: str, secret: str, ids_file: Path, seconds: float, clients: int, threads: int, tag: str
) -> float:
    ok, elapsed = http_count(url, secret, ids_file, seconds, clients, threads, tag)
    return ok / elapsed if elapsed else 0.0


def http_count(
    url: str, secret: str, ids_file: Path, seconds: float, clients: int, threads: int, tag: str
) -> tuple[int, float]:
    """(requests answered 2xx, the longest load client's window in seconds)."""
    args = [
        sys.executable,
        "-m",
        "bench.loadclient",
        "--url",
        url,
        "--seconds",
        str(seconds),
        "--threads",
        str(threads),
        "--object-ids",
        str(ids_file),
    ]
    if secret:
        args += ["--secret", secret]
    loaders = [
        subprocess.Popen([*args, "--tag", f"{tag}c{i}"], cwd=processes.ROOT, stdout=subprocess.PIPE)
        for i in range(clients)
    ]
    ok, elapsed = 0, 0.0
    try:
        for loader in loaders:
            out, _ = loader.communicate(timeout=seconds + 60)
            result = json.loads(out)
            ok += result["ok"]
            elapsed = max(elapsed, result["elapsed_s"])
    finally:
        for loader in loaders:
            processes.stop(loader, grace=2)
    return ok, elapsed


def over_http(
    env: dict[str, str],
    secret: str,
    object_ids: list[str],
    workdir: Path,
    *,
    seconds: float,
    rounds: int,
    servers: Sequence[str] = (processes.WEB_SERVER,),
    server_workers: int = 2,
    clients: int = 2,
    threads: int = 4,
) -> dict[str, dict[str, Any]]:
    """The bare and the signed rate on each event loop of ``servers``
    (``runs_dev.processes.WEB_SERVERS`` names), by loop (``alternating``)."""
    bare, signed, bare_same_path = alternating(
        env,
        secret,
        object_ids,
        workdir,
        # bench/asgi.py as the demo project serves the intake, whatever this shell says.
        {server: (server, {"BENCH_INTAKE_PATH": "wsgi"}) for server in servers},
        seconds=seconds,
        rounds=rounds,
        server_workers=server_workers,
        clients=clients,
        threads=threads,
        same_path=True,
    )
    return {
        server: {
            **_ratio(
                bare[server],
                signed[server],
                f"over HTTP: uvicorn project.asgi on {_loop_words(server, server_workers)}, "
                f"{server_workers} workers, {clients} load-client processes x {threads} "
                "keep-alive connections, same 2 cores",
            ),
            **_same_path(bare_same_path[server], signed[server]),
            "server": server,
        }
        for server in servers
    }


def _same_path(bare: list[float], signed: list[float]) -> dict[str, Any]:
    """The signed rate against the bare view served on the intake's own path (bench/asgi.py)."""
    return {
        "bare_same_path_per_s": round(max(bare), 1),
        "ratio_same_path": round(max(signed) / max(bare), 3),
        "rounds_bare_same_path": [round(x, 1) for x in bare],
    }


def alternating(
    env: dict[str, str],
    secret: str,
    object_ids: list[str],
    workdir: Path,
    configs: dict[str, tuple[str, dict[str, str]]],
    *,
    seconds: float,
    rounds: int,
    server_workers: int = 2,
    clients: int = 2,
    threads: int = 4,
    same_path: bool = False,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """(bare rates, signed rates, bare rates on the intake's path) by name, for each of
    ``configs``: a name's event loop and the environment its web processes add. A server per
    name is up from the start, idle while another is measured; the rounds alternate between
    them, so each pair of rates shares the machine's moment. The third is measured only with
    ``same_path`` (the servers then run bench/asgi.py), and empty otherwise."""
    ids_file = workdir / "intake-ids.txt"
    ids_file.write_text("\n".join(object_ids))
    with ExitStack() as stack:
        bases = {}
        for name, (server, extra) in configs.items():
            port = free_port()
            processes.start_web(
                stack,
                processes.child_env(env, OPENAI_WEBHOOK_SECRET=secret, **extra),
                port,
                workers=server_workers,
                server=server,
                app="bench.asgi:application" if same_path else "project.asgi:application",
            )
            bases[name] = f"http://127.0.0.1:{port}"
        time.sleep(1.0)  # uvicorn's second worker may still be importing Django
        for name, base in bases.items():  # warm every worker up
            _http_rate(base + BARE_PATH, "", ids_file, 1.0, 1, 1, f"warm{name}")
        bare: dict[str, list[float]] = {name: [] for name in configs}
        signed: dict[str, list[float]] = {name: [] for name in configs}
        bare_same_path: dict[str, list[float]] = {name: [] for name in configs} if same_path else {}
        for r in range(rounds):
            # The order turns each round: the events table and the unconsumed wakes grow as
            # the rounds go, and no configuration should always meet the bigger ones.
            order = list(bases.items()) if r % 2 == 0 else list(bases.items())[::-1]
            for name, base in order:
                tag = f"{name}{r}"
                bare[name].append(
                    _http_rate(base + BARE_PATH, "", ids_file, seconds, clients, threads, f"b{tag}")
                )
                signed[name].append(
                    _http_rate(
                        base + WEBHOOK_PATH, secret, ids_file, seconds, clients, threads, f"h{tag}"
                    )
                )
                if same_path:
                    bare_same_path[name].append(
                        _http_rate(
                            base + BARE_WSGI_PATH, "", ids_file, seconds, clients, threads,
                            f"w{tag}",
                        )
                    )  # fmt: skip
    return bare, signed, bare_same_path


def _loop_words(server: str, workers: int) -> str:
    """The loop's name, and on asyncio with several workers what that costs a keep-alive request."""
    if server == "asyncio" and workers > 1:
        return f"{server} (Nagle left on by --workers, docs/operations.md)"
    return server


def _ratio(bare: list[float], signed: list[float], how: str) -> dict[str, Any]:
    return {
        "how": how,
        "bare_per_s": round(max(bare), 1),
        "signed_per_s": round(max(signed), 1),
        "ratio": round(max(signed) / max(bare), 3),
        "rounds": {"bare": [round(x, 1) for x in bare], "signed": [round(x, 1) for x in signed]},
    }
