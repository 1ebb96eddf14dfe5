"""``python -m bench.scorecard`` (``make bench``): every figure of issue 13 in one run, one page.

Runs the parts one after another, each in a process of its own with its own private Redis and
simulator (the parts were built as separate commands; a fresh process per part also means no
part inherits another's leftover threads or connections):

* ``n1000``: 1,000 runs by the tutorial loop, by polling and by webhook, on both queue
  topologies, then webhook intake against a bare view;
* ``n10000``: 10,000 runs by webhook on the split topology, in batched polling mode (the
  safety net from one claiming query, not 10,000 countdowns held by the wake worker);
* ``start_rate``: starts through Celery against a bare SDK loop, chunked and one run per task,
  with the safety nets by due time (the default) or a countdown task per run, each row the
  median of three pairs;
* ``scale_out``: two slot-bound nodes against one (Redis, RabbitMQ), 1,000 runs by polling on
  RabbitMQ against Redis (split topology, per-run and batched polling), a poll tick against a
  bare countdown task.

The workload is the issue's: durations uniform in 5-20 s, all enqueued at once, 2 worker
processes of 8 threads, PostgreSQL, uvicorn (2 processes) for webhooks, beat. Between parts it
waits (up to ``--settle-s``) for the 1-minute load to fall under the core count, so a part does
not inherit the previous one's load; every row still carries the load measured while it ran.
Then it writes
``scorecard.{json,md}`` next to the parts' own reports: each aim, the figure, its baseline from
this run, the ratio, met or not. ``--compile-only`` redoes the page from the parts' JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import scorecard_rows as rows
from . import scorecard_scale
from .load import cell as load_cell
from .load import cores, load1
from .processes import ROOT

OUT = ROOT / "docs" / "bench" / "scorecard"
#: The issue's workload: "runs of 5-20 s (uniform), all enqueued at once".
WORKLOAD = ["--durations", "uniform", "--min-s", "5", "--max-s", "20"]
PARTS = ("n1000", "n10000", "start_rate", "scale_out")


def commands(out: Path) -> dict[str, list[str]]:
    """Each part's command line (``python`` plus these arguments); its report lands in ``out``
    (named relative to the project, where the parts run, so a report's command names no
    machine path)."""
    if out.is_absolute() and out.is_relative_to(ROOT):
        out = out.relative_to(ROOT)
    bench = ["-m", "bench", "--full", "--threads", "8", *WORKLOAD]
    return {
        "n1000": [*bench, "--ns", "1000", "--strategies", "tutorial", "countdown", "webhook",
                  "--topologies", "shared", "split", "--out", str(out / "n1000")],
        "n10000": [*bench, "--ns", "10000", "--strategies", "webhook", "--topologies", "split",
                   "--poll-modes", "batched", "--no-intake", "--out", str(out / "n10000")],
        "start_rate": ["-m", "bench.start_rate", "--strategies", "webhook", "--chunks", "16", "1",
                       "--poll-modes", "default", "per_run", "--repeats", "3",
                       "--out", str(out / "start_rate" / "start_rate")],
        "scale_out": ["-m", "bench", "--scale-out", "--topologies", "split",
                      "--poll-modes", "auto", "batched", "per_run",
                      "--out", str(out / "scale_out")],
    }  # fmt: skip


#: Where each part's JSON lands inside ``out``.
REPORTS = {
    "n1000": "n1000/results.json",
    "n10000": "n10000/results.json",
    "start_rate": "start_rate/start_rate.json",
    "scale_out": "scale_out/scale_out.json",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scorecard", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument(
        "--settle-s",
        type=float,
        default=90.0,
        help="longest wait before a part for the 1-minute load to fall under the core count",
    )
    parser.add_argument(
        "--compile-only",
        action="store_true",
        help="measure nothing: redo scorecard.{json,md} from the parts' JSON already in --out",
    )
    return parser.parse_args(argv)


def settle(limit_s: float) -> dict[str, Any]:
    """Wait until the machine is no busier than its cores (or ``limit_s`` passed); say how long."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        now = load1()
        if now is None or now < cores():
            break
        time.sleep(2.0)  # the bench's driver, not a task: nothing else waits for this process
    return {"waited_s": round(time.monotonic() - began, 1), "load1": load1()}


def run_parts(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each part in turn; a part that fails is recorded and the others still run."""
    done = []
    for name, argv in commands(args.out).items():
        if name not in args.parts:
            continue
        (args.out / REPORTS[name]).unlink(missing_ok=True)  # an old report must not pass as new
        before = settle(args.settle_s)
        print(f"scorecard: {name} (load {before['load1']} after {before['waited_s']} s)")
        began = time.monotonic()
        rc = subprocess.run([sys.executable, *argv], cwd=ROOT, check=False).returncode
        done.append(
            {
                "part": name,
                "command": " ".join(["python", *argv]),
                "rc": rc,
                "wall_s": round(time.monotonic() - began, 1),
                "settled": before,
            }
        )
    return done


def _read(out: Path, part: str) -> dict[str, Any] | None:
    path = out / REPORTS[part]
    return json.loads(path.read_text()) if path.exists() else None


def compile_rows(out: Path, parts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every aim's rows, from the parts' reports in ``out``; with ``parts`` (what a run did),
    only from the parts that ran and exited 0 in it, so one run's page holds that run alone."""
    ok = {p["part"] for p in parts if p["rc"] == 0} if parts else set(PARTS)
    found = {part: _read(out, part) if part in ok else None for part in PARTS}
    n1000, start = found["n1000"], found["start_rate"]
    bare = rows.bare_start_rate(start)
    out_rows: list[dict[str, Any]] = []
    if n1000:
        out_rows += rows.n1000_rows(n1000, bare, REPORTS["n1000"])
    if start:
        out_rows += rows.start_rate_rows(start, REPORTS["start_rate"])
    if found["n10000"]:
        out_rows += rows.n10000_rows(found["n10000"], n1000, bare, REPORTS["n10000"])
    if found["scale_out"]:
        out_rows += scorecard_scale.scale_out_rows(found["scale_out"], REPORTS["scale_out"])
    return out_rows


def write(out: Path, card: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scorecard.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "scorecard.md").write_text("\n".join(markdown(card)) + "\n")


def _met(value: bool | None) -> str:
    return {True: "**met**", False: "not met", None: "report"}[value]


def markdown(card: dict[str, Any]) -> list[str]:
    met = [r for r in card["rows"] if r["met"] is not None]
    lines = [
        "# Issue 13's figures: one `make bench` run",
        "",
        f"Generated by `{card['command']}` on {card['generated_at']}, in "
        f"{card['bench_wall_s']:,.0f} s on {card['cores']} cores. Each part ran in this one "
        "invocation (commands below); every ratio is against a baseline measured in the same "
        "run, and every row carries the 1-minute load average while it was measured "
        "(start → end; ⚠ where above the core count: the machine is shared, read the ratios). "
        "Workload: durations uniform in 5-20 s, all enqueued at once, 2 worker processes x 8 "
        "threads, PostgreSQL, uvicorn (2 processes) for webhooks, beat running.",
        "",
        f"**{sum(1 for r in met if r['met'])} of {len(met)} aims met.**",
        "",
        "| aim | where | measured | baseline (same run) | ratio | verdict | load 1 min | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in card["rows"]:
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(
            f"| {r['aim']} | {r['where']} | {r['measured']} | {r['baseline'] or '–'} | {ratio} "
            f"| {_met(r['met'])} | {load_cell(r['load'])} | [{r['source']}]({r['source']}) |"
        )
    if card.get("parts"):
        lines += ["", "## The parts", "", "| part | command | exit | wall s | load before |"]
        lines.append("|---|---|---|---|---|")
        for p in card["parts"]:
            settled = p["settled"]
            lines.append(
                f"| {p['part']} | `{p['command']}` | {p['rc']} | {p['wall_s']:,.0f} | "
                f"{settled['load1']} (after waiting {settled['waited_s']} s) |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    previous = _previous(args.out)
    parts = previous.get("parts", []) if args.compile_only else run_parts(args)
    card = {
        "command": previous.get("command", "python -m bench.scorecard")
        if args.compile_only
        else _command(argv),
        "generated_at": previous.get("generated_at", "–")
        if args.compile_only
        else datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "bench_wall_s": previous.get("bench_wall_s", 0.0)
        if args.compile_only
        else round(time.monotonic() - began, 1),
        "cores": cores(),
        "parts": parts,
        "rows": compile_rows(args.out, parts),
    }
    write(args.out, card)
    print(f"wrote {args.out / 'scorecard.md'}")
    return 0 if all(p["rc"] == 0 for p in parts) else 1


def _previous(out: Path) -> dict[str, Any]:
    path = out / "scorecard.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _command(argv: list[str] | None) -> str:
    return " ".join(["python -m bench.scorecard", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
