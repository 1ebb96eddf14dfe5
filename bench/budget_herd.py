"""The request budget's deferred calls, queued against unqueued: ``python -m bench.budget_herd``.

What it measures: N calls over budget at once (creates, or half creates and half polls), each
deferred call coming back when it was told plus a countdown's lateness, until every call got a
token. Each ask of the budget is one task execution in production (a start or a poll tick that
claims its row, asks, and re-arms), so asks per call is the cost of waiting for the budget.

How: the real script (``runs.budget``) in a private Redis, on a frozen clock moved from one
return to the next (a discrete-event run: exact, and minutes of budget time in seconds). The
baseline is the script before deferred calls were queued (``UNQUEUED``, kept here): told only
"a token is due in 20 ms", every deferred call comes back together. Both run in the same
invocation, on the same Redis, with the same arrivals and the same lateness.

Writes ``docs/bench/budget_herd/budget_herd.{json,md}`` unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from project.localredis import start_private_redis

from .load import LoadWindow, cell
from .standalone import write_pair

ROOT = Path(__file__).resolve().parent.parent

#: The budget's script before deferred calls were queued (the baseline): one wait for all.
UNQUEUED = """
local rate, burst, reserve, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, at = burst, now end
now = math.max(now, at)
tokens = math.min(burst, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 + reserve then
  tokens = tokens - 1
else
  wait = math.ceil((1 + reserve - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""

SCRIPTS = ("unqueued", "queued")
#: Asks after which a drain is given up on (the unqueued script needs about N²/2).
MAX_ASKS = 2_000_000


class Clock:
    """The bucket's clock, moved by the drain from one return to the next."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.budget_herd", description=__doc__)
    parser.add_argument("--ns", type=int, nargs="+", default=[100, 1000, 10000, 20000])
    parser.add_argument("--rps", type=float, default=50.0, help="RUNS_MAX_RPS")
    parser.add_argument("--low-rps", type=float, default=1.0,
                        help="a low RUNS_MAX_RPS too: the smallest bucket, 2 tokens")  # fmt: skip
    parser.add_argument("--low-ns", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--late-ms", type=float, nargs=2, default=[1.0, 20.0],
                        help="a countdown's lateness, uniform between these (below 0: early, "
                        "as a worker whose clock runs ahead of Redis's)")  # fmt: skip
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=1000,
        help="run the unqueued baseline up to this N (it needs about N²/2 asks)",
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "budget_herd")
    args = parser.parse_args(argv)
    if (
        min(args.ns + args.low_ns) < 1
        or min(args.rps, args.low_rps) <= 0
        or (args.late_ms[0] > args.late_ms[1])
    ):
        parser.error("--ns must be at least 1, --rps above 0, --late-ms a rising pair")
    return args


@contextmanager
def bucket(redis_url: str, rps: float, script: str, clock: Clock) -> Iterator[None]:
    """``runs.budget`` on ``redis_url`` at ``rps`` with a 1 s burst, on ``clock``, running
    ``script`` ("queued": the app's own; "unqueued": the baseline), emptied before."""
    import redis
    from django.conf import settings

    from runs import budget

    settings.RUNS_BUDGET_REDIS_URL = redis_url
    settings.RUNS_MAX_RPS = rps
    settings.RUNS_BUDGET_BURST_S = 1.0
    client = redis.Redis.from_url(redis_url)
    client.delete(budget.KEY)
    budget.reset_connection()
    real_script, real_clock = budget._script, budget.clock
    if script == "unqueued":
        registered = client.register_script(UNQUEUED)
        budget._script = lambda: registered  # type: ignore[assignment]
    budget.clock = clock.time
    try:
        yield
    finally:
        budget._script, budget.clock = real_script, real_clock
        budget.reset_connection()


def drain(kinds: list[str], clock: Clock, late: Callable[[], float]) -> dict[str, Any]:
    """Every call of ``kinds`` made at once, each deferred one back after its wait and
    ``late()``: how many times the budget was asked, and when the last call got its token."""
    from runs import budget

    start = clock.now
    waiting = [(start, i) for i in range(len(kinds))]
    asks = 0
    got: list[float] = []
    cpu = time.process_time()
    wall = time.perf_counter()
    while waiting and asks < MAX_ASKS:
        when, who = heapq.heappop(waiting)
        clock.now = when
        asks += 1
        wait = budget.take(kinds[who])
        if wait > 0:
            heapq.heappush(waiting, (when + wait + late(), who))
        else:
            got.append(when - start)
    return {
        "calls": len(kinds),
        "asks": asks,
        "asks_per_call": round(asks / len(kinds), 3),
        "ended": not waiting,
        "drained_s": round(max(got), 3) if got else None,
        "redis_wall_s": round(time.perf_counter() - wall, 2),
        "bench_cpu_s": round(time.process_time() - cpu, 2),
    }


def workloads(n: int) -> dict[str, list[str]]:
    mixed = ["create", "poll"] * (n // 2) + ["create"] * (n % 2)
    return {"creates": ["create"] * n, "mixed": mixed}


def measure(redis_url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    low, high = (x / 1000 for x in args.late_ms)
    cases = [(args.rps, n) for n in args.ns] + [(args.low_rps, n) for n in args.low_ns]
    for rps, n in cases:
        for name, kinds in workloads(n).items():
            row: dict[str, Any] = {"rps": rps, "n": n, "workload": name}
            for script in SCRIPTS:
                if script == "unqueued" and n > args.baseline_max:
                    row[script] = None
                    continue
                rng = random.Random(args.seed)  # the same lateness for both scripts
                clock = Clock()
                with bucket(redis_url, rps, script, clock):
                    row[script] = drain(kinds, clock, lambda rng=rng: rng.uniform(low, high))
                print(f"{rps:g}/s N={n} {name} {script}: {row[script]}", flush=True)
            # At least the burst goes at once; the rest at the refill rate.
            row["ideal_drain_s"] = round(max(0.0, n - max(2.0, rps)) / rps, 3)
            if row["unqueued"]:
                row["asks_ratio"] = round(row["queued"]["asks"] / row["unqueued"]["asks"], 5)
            rows.append(row)
    return rows


def _asks(d: dict[str, Any] | None) -> str:
    if d is None:
        return "not run (about N²/2)"
    more = "" if d["ended"] else f" (stopped at {MAX_ASKS:,}: not drained)"
    return f"{d['asks']:,} ({d['asks_per_call']:,.2f} per call){more}"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# The request budget's deferred calls: queued against unqueued",
        "",
        f"Generated by `{results['command']}` on {results['generated_at']} (load "
        f"{cell(results['load'])}). `RUNS_MAX_RPS` as in the first column, with a 1 s burst, "
        f"`RUNS_MAX_COUNTDOWN_S` = {results['max_countdown_s']:g} (no slot is handed further "
        "away: such a call is told the cap and asks again then); every call made at once; a "
        "deferred call comes back after its wait plus a countdown's "
        f"lateness of {results['late_ms'][0]:g}-{results['late_ms'][1]:g} ms (uniform, the same "
        "draws for both). The real script in a private Redis on a frozen clock, moved from one "
        "return to the next (bench/budget_herd.py). *Unqueued* is the script before this change: "
        "every deferred call told the same wait. Each ask is one task execution in production.",
        "",
        "| RUNS_MAX_RPS | N | calls | asks, unqueued | asks, queued | queued / unqueued "
        "| last token, unqueued | last token, queued | at the refill rate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        u, q = row["unqueued"], row["queued"]
        ratio = f"**{row['asks_ratio']:.4f}x**" if u else "–"
        lines.append(
            f"| {row['rps']:g} | {row['n']:,} | {row['workload']} | {_asks(u)} | {_asks(q)} "
            f"| {ratio} | {u['drained_s'] if u else '–'} s | {q['drained_s']} s "
            f"| {row['ideal_drain_s']} s |"
        )
    lines += [
        "",
        "*mixed*: half creates, half polls (a poll leaves 20 % of the bucket to creates). The "
        "last token's time is budget time from the first call; *at the refill rate* is N minus "
        "the burst over the rate. Every row is in [budget_herd.json](budget_herd.json).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.conf import settings

    redis = start_private_redis()
    try:
        load = LoadWindow().start()
        rows = measure(redis.url, args)
        results: dict[str, Any] = {
            "command": " ".join(["python -m bench.budget_herd", *(argv or sys.argv[1:])]),
            "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "rps": args.rps,
            "low_rps": args.low_rps,
            "max_countdown_s": float(settings.RUNS_MAX_COUNTDOWN_S),
            "late_ms": args.late_ms,
            "seed": args.seed,
            "load": load.stop(),
            "rows": rows,
        }
    finally:
        redis.stop()
    write_pair(args.out, "budget_herd", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
