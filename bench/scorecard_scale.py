"""Issue 13's scale-out rows of the scorecard: two nodes against one, RabbitMQ at 1,000 runs
against Redis, a poll tick against a bare countdown task (``python -m bench --scale-out``'s
report). Kept apart from ``scorecard_rows`` only for length; the rows are built the same way.
"""

from __future__ import annotations

from typing import Any

from .scale_report import pair_ratios
from .scorecard_rows import ratio_of, row, where_of
from .topology import notes

TWO_NODES_X = 1.6
TICK_X = 0.4
#: "Retrieves on the schedule": within this share of the schedule's nominal count, either way
#: (the count has no jitter and no lateness, so a little off is on schedule, half of it is not).
ON_SCHEDULE_SHARE = 0.1


def scale_out_rows(results: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Two nodes against one, RabbitMQ at 1,000 runs against Redis, the tick rate."""
    out = []
    scale = results.get("scale_out") or {}
    for r in scale.get("ratios", []):
        rows = [x for x in scale["rows"] if x["broker"] == r["broker"]]
        one = next((x for x in rows if x["nodes"] == 1), None)
        two = next((x for x in rows if x["nodes"] == 2), None)
        if not (one and two):
            continue
        out.append(
            row(
                f"Two slot-bound nodes >= {TWO_NODES_X}x one node, 0 lost, 0 doubled",
                f"{r['broker']}, {two['threads_per_node']} slots per node, N={two['n']:,} runs "
                f"of {scale.get('run_s', '?')} s, {scale.get('simulator_latency_ms', '?')} ms "
                "per API call",
                f"{two['runs_per_s']} runs/s; lost {one['lost'] + two['lost']}, "
                f"doubled {one['doubled'] + two['doubled']}",
                baseline=f"one node {one['runs_per_s']} runs/s",
                ratio=r["throughput_ratio"],
                met=bool(r["met"]) and bool(r["zero_lost_zero_doubled"]),
                load=two.get("load"),
                source=source,
            )
        )
    rabbit = (results.get("rabbit_1000") or {}).get("rows", [])
    for r in (x for x in rabbit if x["broker"] == "rabbitmq"):
        redis = next((x for x in rabbit if x["broker"] == "redis" and notes(x) == notes(r)), None)
        got, want = r["calls_per_run"]["retrieve"], r["schedule_predicts_retrieves_per_run"]
        failures = sum((r.get("task_failures") or {}).values())
        clean = r["lost"] == 0 and r["doubled"] == 0 and failures == 0
        out.append(
            row(
                "RabbitMQ, 1,000 runs: 0 lost, 0 doubled, no task errors, retrieves on schedule",
                where_of(r),
                f"lost {r['lost']}, doubled {r['doubled']}, task errors {failures}; "
                f"{got} retrieves per run against the schedule's {want}",
                baseline=f"Redis, same runs: {redis['calls_per_run']['retrieve']} per run"
                if redis
                else "",
                ratio=ratio_of(got, redis["calls_per_run"]["retrieve"] if redis else None),
                met=clean and abs(got / want - 1) <= ON_SCHEDULE_SHARE,
                load=r.get("load"),
                source=source,
            )
        )
    tick = results.get("tick_rate")
    if tick:
        bare = f"bare countdown task {tick['bare']['ticks_per_s']}/s"
        each = pair_ratios(tick)
        pairs = f", median of {tick['repeats']} pairs ({each})" if each else ""
        out.append(
            row(
                f"Per-run poll tick >= {TICK_X}x a bare Celery countdown task",
                f"{tick['workers']} workers x {tick['threads']} threads{pairs}",
                f"{tick['poll']['ticks_per_s']} ticks/s, "
                f"{tick['poll']['worker_cpu_ms_per_tick']} ms of worker CPU each",
                baseline=bare,
                ratio=tick["ratio"],
                met=tick["ratio"] >= TICK_X,
                load=tick.get("load"),
                source=source,
            )
        )
        if tick.get("batched"):
            out.append(
                row(
                    f"Batched polling, retrieves >= {TICK_X}x a bare countdown task's ticks",
                    f"{tick['batched']['runs']:,} runs in progress",
                    f"{tick['batched']['ticks_per_s']} retrieves/s",
                    baseline=f"bare countdown task "
                    f"{tick.get('batched_bare_ticks_per_s') or tick['bare']['ticks_per_s']}/s",
                    ratio=tick["batched_ratio"],
                    met=tick["batched_ratio"] >= TICK_X,
                    load=tick["batched"].get("load") or tick.get("load"),
                    source=source,
                )
            )
    return out
