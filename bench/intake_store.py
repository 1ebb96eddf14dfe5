"""How a webhook delivery is stored, side by side: ``python -m bench.intake_store``.

On PostgreSQL a delivery is one statement: the event's insert-or-ignore and, in the same
data-modifying ``WITH``, the run's fresh ticket (``runs/engine/event_rows.py``). SQLite has no
such ``WITH``, so there the wake's UPDATE follows the insert: two statements (two commits until
the seventeenth session; since then one transaction, so that a process killed between them leaves
no event stored without its wake, and the figures of earlier runs of this bench no longer
describe that side). This bench serves both on PostgreSQL and measures them alike, alternating:

* **in-process**: Django's ``WSGIHandler`` in this process, one request at a time (as
  ``bench.intake``): deliveries per second, the view's CPU per delivery, statements per delivery;
* **over HTTP**: uvicorn ``project.asgi`` on uvloop with 2 workers per store, loaded by
  ``bench.loadclient`` processes with keep-alive connections (as ``bench.intake``), each store's
  server up from the start and the order of the rounds turning each round.

The two-statement store is the app's own SQLite path, chosen on PostgreSQL by
``BENCH_INTAKE_STORE=insert_then_wake`` (read by ``bench.urls``). Each round also measures the
bare view, so every rate has a yardstick from the same moment.

Writes ``docs/bench/intake_store/intake_store.{json,md}`` unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from project.localredis import start_private_redis

from . import intake
from .database import choose_url, empty_tables, vendor
from .events import delivery
from .load import LoadWindow, cell
from .standalone import write_pair

ROOT = Path(__file__).resolve().parent.parent
#: The stores compared: the app's PostgreSQL path, then its SQLite one on the same database.
STORES = ("one_statement", "insert_then_wake")
STORE_ENV = "BENCH_INTAKE_STORE"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_store", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "intake_store")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")
    return args


@contextmanager
def stored_as(store: str):
    """Store deliveries of this process as ``store`` for the block (in-process rounds)."""
    from runs.engine import event_rows

    real = event_rows.wakes_in_insert
    if store == "insert_then_wake":
        event_rows.wakes_in_insert = lambda about: False
    try:
        yield
    finally:
        event_rows.wakes_in_insert = real


def statements_per_delivery(secret: str, object_id: str, tag: str) -> list[str]:
    """The first word of each statement one fresh delivery makes through the view."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    body, headers = delivery(secret, f"wh_count_{tag}", object_id)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    with CaptureQueriesContext(connection) as queries:
        answer = Client().post(intake.WEBHOOK_PATH, body, content_type="application/json", **extra)
    if answer.status_code != 200:
        raise RuntimeError(f"a counted delivery was answered {answer.status_code}")
    return [q["sql"].split(None, 1)[0].upper() for q in queries.captured_queries]


def postgres_cpu_s() -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL server process on this machine, by pid."""
    import psutil

    seen = {}
    for process in psutil.process_iter(["name", "cpu_times"]):
        if (process.info["name"] or "").startswith("postgres") and process.info["cpu_times"]:
            times = process.info["cpu_times"]
            seen[process.pid] = times.user + times.system
    return seen


def wal_syncs() -> int | None:
    """The server's WAL flushes so far (``pg_stat_wal``, PostgreSQL 14 on): a commit's wait."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT wal_sync FROM pg_stat_wal")
            return int(cursor.fetchone()[0])
    except Exception:  # noqa: BLE001 - an older server: the column is left out
        return None


def signed_round(secret: str, ids: list[str], seconds: float, tag: str) -> dict[str, Any]:
    """One in-process round of signed deliveries, with what they cost the database server."""
    cpu0, syncs0 = postgres_cpu_s(), wal_syncs()
    started = time.perf_counter()
    rate, cpu = intake._inprocess_rate(intake.WEBHOOK_PATH, secret, ids, seconds, tag)
    done = max(1.0, rate * (time.perf_counter() - started))
    cpu1, syncs1 = postgres_cpu_s(), wal_syncs()
    server_s = sum(t - cpu0.get(pid, 0.0) for pid, t in cpu1.items())
    return {
        "per_s": round(rate, 1),
        "cpu_ms": round(cpu, 3),
        "postgres_cpu_ms": round(1000 * server_s / done, 3),
        "wal_syncs": None if None in (syncs0, syncs1) else round((syncs1 - syncs0) / done, 2),
    }


def inprocess(secret: str, ids: list[str], rounds: int, seconds: float) -> dict[str, Any]:
    keys = ("per_s", "cpu_ms", "postgres_cpu_ms", "wal_syncs", "bare_per_s")
    found: dict[str, dict[str, list[Any]]] = {store: {k: [] for k in keys} for store in STORES}
    statements = {}
    for r in range(rounds):
        order = STORES if r % 2 == 0 else STORES[::-1]
        for store in order:
            with stored_as(store):
                bare, _ = intake._inprocess_rate(intake.BARE_PATH, secret, ids, seconds, f"b{r}")
                signed = signed_round(secret, ids, seconds, f"{store}{r}")
                statements[store] = statements_per_delivery(secret, ids[r], f"{store}{r}")
            for key, value in signed.items():
                found[store][key].append(value)
            found[store]["bare_per_s"].append(round(bare, 1))
    return {store: {**found[store], "statements": statements[store]} for store in STORES}


def over_http(
    env: dict[str, str], secret: str, ids: list[str], rounds: int, seconds: float
) -> dict[str, Any]:
    """Each store served by uvicorn on uvloop, the rounds alternating (``intake.alternating``)."""
    bare, signed, _ = intake.alternating(
        env,
        secret,
        ids,
        Path(tempfile.mkdtemp(prefix="intake-store-")),
        {store: ("uvloop", {STORE_ENV: store}) for store in STORES},
        seconds=seconds,
        rounds=rounds,
    )
    return {
        store: {
            "per_s": [round(x, 1) for x in signed[store]],
            "bare_per_s": [round(x, 1) for x in bare[store]],
        }
        for store in STORES
    }


def summary(rows: dict[str, Any]) -> dict[str, Any]:
    """Medians per store, and the one-statement store against the two-statement one."""
    out: dict[str, Any] = {}
    for store in STORES:
        row = rows[store]
        out[store] = {key: statistics.median(row[key]) for key in ("per_s", "bare_per_s")}
        out[store]["against_bare"] = round(out[store]["per_s"] / out[store]["bare_per_s"], 3)
        for key in ("cpu_ms", "postgres_cpu_ms", "wal_syncs"):
            known = [v for v in row.get(key, []) if v is not None]
            if known:
                out[store][key] = statistics.median(known)
    one, two = out["one_statement"], out["insert_then_wake"]
    out["ratio"] = round(one["per_s"] / two["per_s"], 3)
    for key in ("cpu_ms", "postgres_cpu_ms"):
        if key in one and key in two and two[key]:
            out[f"{key}_ratio"] = round(one[key] / two[key], 3)
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# How a webhook delivery is stored: one statement against two",
        "",
        f"Generated by `{results['command']}` on {results['generated_at']}, on "
        f"{results['database']}. {results['rounds']} rounds of {results['seconds']} s per "
        "measurement, the two stores alternating and the order turning each round; medians of "
        "the rounds. `one_statement` is the app on PostgreSQL: the event's insert and the run's "
        "fresh ticket in one data-modifying WITH. `insert_then_wake` is its SQLite path (the "
        "insert, then the wake's UPDATE), served here on the same PostgreSQL database. "
        "PostgreSQL's CPU and WAL flushes are the whole server's (every postgres process, "
        "`pg_stat_wal`) over each round, so anything else the server did meanwhile counts too; "
        "a flush is counted when it happens, so group commits and the WAL writer can put a "
        "round below one flush per commit.",
        "",
    ]
    parts = (
        ("inprocess", "In-process, one request at a time"),
        ("http", "Over HTTP: uvicorn on uvloop, 2 workers; 2 load clients x 4 connections"),
    )
    for part, title in parts:
        s = results[part]["summary"]
        lines += [
            f"## {title}",
            "",
            f"Load 1 min: {cell(results[part]['load'])}.",
            "",
            "| store | deliveries/s | bare view/s | against the bare view | rounds (deliveries/s) |"
            + (
                " view CPU ms per delivery | PostgreSQL CPU ms per delivery "
                "| WAL flushes per delivery | statements |"
                if part == "inprocess"
                else ""
            ),
            "|---|---|---|---|---|" + ("---|---|---|---|" if part == "inprocess" else ""),
        ]
        for store in STORES:
            row, rounds = s[store], results[part]["rounds"][store]
            line = (
                f"| {store} | {row['per_s']:.0f} | {row['bare_per_s']:.0f} "
                f"| {row['against_bare']:.3f}x | {', '.join(f'{x:.0f}' for x in rounds['per_s'])} |"
            )
            if part == "inprocess":
                syncs = row.get("wal_syncs")
                line += (
                    f" {row['cpu_ms']:.3f} | {row.get('postgres_cpu_ms', 0):.3f} "
                    f"| {'n/a' if syncs is None else f'{syncs:.2f}'} "
                    f"| {', '.join(rounds['statements'])} |"
                )
            lines.append(line)
        verdict = f"One statement against two: **{s['ratio']:.2f}x** the deliveries per second"
        if "cpu_ms_ratio" in s:
            verdict += f", {s['cpu_ms_ratio']:.2f}x the view's CPU per delivery"
        if "postgres_cpu_ms_ratio" in s:
            verdict += f", {s['postgres_cpu_ms_ratio']:.2f}x PostgreSQL's"
        lines += ["", verdict + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    redis = start_private_redis()
    try:
        db_url, note = choose_url()
        if vendor(db_url) != "postgresql":
            print(
                "bench.intake_store needs PostgreSQL (the one-statement store is its own)",
                file=sys.stderr,
            )
            return 2
        env, secret, ids = intake.standalone(redis.url, db_url, "intake_store")
        results: dict[str, Any] = {
            "command": " ".join(["python -m bench.intake_store", *(argv or sys.argv[1:])]),
            "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "database": note,
            "rounds": args.rounds,
            "seconds": args.seconds,
        }
        load = LoadWindow().start()
        rounds = inprocess(secret, ids, args.rounds, args.seconds)
        results["inprocess"] = {"rounds": rounds, "summary": summary(rounds), "load": load.stop()}
        load = LoadWindow().start()
        rounds = over_http(env, secret, ids, args.rounds, args.seconds)
        results["http"] = {"rounds": rounds, "summary": summary(rounds), "load": load.stop()}
        empty_tables()
    finally:
        redis.stop()
    write_pair(args.out, "intake_store", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
