"""The webhook intake on Django's ASGI handler against its own path, side by side:
``python -m bench.intake_path``.

The demo project serves the intake on Django's WSGI handler in a thread pool under uvicorn
(``runs/intake/asgi.py``); before, Django's ASGI handler served it like every other view. Two
uvicorn servers (uvloop, 2 workers each) run ``bench/asgi.py``, one with the intake on the ASGI
handler (``BENCH_INTAKE_PATH=asgi``), one as the demo project serves it; both are up from the
start and the rounds alternate between them, the order turning each round. Each round measures,
on each server, signed deliveries (every one names a real in-progress run, so the view verifies,
records and wakes) and the bare view on both paths, by rate over HTTP (``bench.loadclient``
processes, keep-alive connections) and by the web processes' CPU per request.

Writes ``docs/bench/intake_path/intake_path.{json,md}`` unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from project.localredis import free_port, start_private_redis

from . import intake, processes
from .database import choose_url, empty_tables
from .load import LoadWindow, cell
from .sampling import cpu_s
from .standalone import write_pair

ROOT = Path(__file__).resolve().parent.parent
#: The servers compared: the intake on Django's ASGI handler (before), then on its own path.
PATHS = ("asgi", "wsgi")
#: What each round measures on each server: (name, URL path, signed).
SIDES = (
    ("signed", intake.WEBHOOK_PATH, True),
    ("bare_asgi", intake.BARE_PATH, False),
    ("bare_wsgi", intake.BARE_WSGI_PATH, False),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_path", description=__doc__)
    parser.add_argument("--rounds", type=int, default=4, help="even: each server first as often")
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "intake_path")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")
    return args


def measure(env: dict[str, str], secret: str, ids: list[str], args: argparse.Namespace) -> dict:
    """Every round's rate and CPU per request, by server and side."""
    workdir = Path(tempfile.mkdtemp(prefix="intake-path-"))
    ids_file = workdir / "ids.txt"
    ids_file.write_text("\n".join(ids))
    found: dict[str, dict[str, list[dict[str, float]]]] = {
        path: {side: [] for side, _, _ in SIDES} for path in PATHS
    }
    with ExitStack() as stack:
        servers = {}
        for path in PATHS:
            port = free_port()
            child = processes.child_env(env, OPENAI_WEBHOOK_SECRET=secret, BENCH_INTAKE_PATH=path)
            web = processes.start_web(stack, child, port, workers=2, app="bench.asgi:application")
            servers[path] = (f"http://127.0.0.1:{port}", web.pid)
        time.sleep(1.0)  # uvicorn's second worker may still be importing Django
        for base, _ in servers.values():
            intake._http_rate(base + intake.BARE_PATH, "", ids_file, 1.0, 1, 1, "warm")
        for r in range(args.rounds):
            order = PATHS if r % 2 == 0 else PATHS[::-1]
            for path in order:
                base, pid = servers[path]
                for side, url_path, is_signed in SIDES:
                    before = cpu_s([pid])
                    ok, elapsed = intake.http_count(
                        base + url_path, secret if is_signed else "", ids_file, args.seconds,
                        2, 4, f"{path}{side}{r}",
                    )  # fmt: skip
                    # The CPU is the whole window's, the load clients' start and stop included
                    # (the server idles then), over the requests answered in it.
                    cpu_ms = 1000 * (cpu_s([pid]) - before) / ok if ok else None
                    found[path][side].append(
                        {
                            "per_s": round(ok / elapsed, 1) if elapsed else 0.0,
                            "cpu_ms": cpu_ms and round(cpu_ms, 3),
                        }
                    )
    return found


def summary(found: dict) -> dict[str, Any]:
    """Medians per server and side, and the intake's own path against the ASGI handler."""
    med = {
        path: {
            side: {
                "per_s": statistics.median(x["per_s"] for x in rows),
                "cpu_ms": statistics.median(
                    [x["cpu_ms"] for x in rows if x["cpu_ms"] is not None] or [float("nan")]
                ),
            }
            for side, rows in sides.items()
        }
        for path, sides in found.items()
    }
    before, after = med["asgi"]["signed"], med["wsgi"]["signed"]
    return {
        "medians": med,
        "signed_rate_ratio": round(after["per_s"] / before["per_s"], 3),
        "signed_cpu_ratio": round(after["cpu_ms"] / before["cpu_ms"], 3),
    }


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    lines = [
        "# The webhook intake on its own path against Django's ASGI handler",
        "",
        f"Generated by `{results['command']}` on {results['generated_at']} ({results['database']}"
        f"; load {cell(results['load'])}). Two uvicorn servers (uvloop, 2 workers each) on the "
        "same 2 cores as their load clients (2 processes x 4 keep-alive connections), up "
        "together, the rounds alternating between them; medians of "
        f"{results['rounds']} rounds of {results['seconds']:g} s. CPU is the web processes' "
        "(user + system) over the requests they answered.",
        "",
        "| intake served by | signed deliveries/s | web CPU per delivery | bare view on the ASGI "
        "handler | bare view on the intake's path |",
        "|---|---|---|---|---|",
    ]
    words = {
        "asgi": "Django's ASGI handler (before)",
        "wsgi": "Django's WSGI handler in a thread pool (runs/intake/asgi.py)",
    }
    for path in PATHS:
        m = s["medians"][path]
        lines.append(
            f"| {words[path]} | {m['signed']['per_s']:,.1f} | {m['signed']['cpu_ms']:.2f} ms "
            f"| {m['bare_asgi']['per_s']:,.1f}/s at {m['bare_asgi']['cpu_ms']:.2f} ms "
            f"| {m['bare_wsgi']['per_s']:,.1f}/s at {m['bare_wsgi']['cpu_ms']:.2f} ms |"
        )
    lines += [
        "",
        f"The intake on its own path: **{s['signed_rate_ratio']:.2f}x** the deliveries per "
        f"second, at **{s['signed_cpu_ratio']:.2f}x** the web CPU per delivery. Every round is in "
        "[intake_path.json](intake_path.json).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    redis = start_private_redis()
    try:
        db_url, note = choose_url()
        env, secret, ids = intake.standalone(redis.url, db_url, "intake_path")
        load = LoadWindow().start()
        found = measure(env, secret, ids, args)
        results: dict[str, Any] = {
            "command": " ".join(["python -m bench.intake_path", *(argv or sys.argv[1:])]),
            "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "database": note,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "load": load.stop(),
            "found": found,
        }
        results["summary"] = summary(found)
        empty_tables()
    finally:
        redis.stop()
    write_pair(args.out, "intake_path", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
