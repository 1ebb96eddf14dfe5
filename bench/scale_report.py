"""The Markdown page of ``python -m bench --scale-out`` (docs/bench/scale_out.md).

Every table carries the machine's load average beside its figures (bench/load.py): the ratios
only mean something when both sides ran on a machine that was not busier than its cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .load import cell as load_cell
from .topology import notes


def _f(value: Any, suffix: str = "") -> str:
    if value is None:
        return "–"
    return (f"{value:,.2f}" if isinstance(value, float) else f"{value:,}") + suffix


def _failures(row: dict[str, Any]) -> str:
    failures = row.get("task_failures") or {}
    return ", ".join(f"{k}: {v}" for k, v in failures.items()) or "0"


def scale_lines(section: dict[str, Any]) -> list[str]:
    lines = [
        "| broker | nodes x slots | N | terminal | lost | doubled | task errors / retries | "
        "wall s | runs/s | API calls/s | tasks per node | CPU per node (share of a core) | "
        "simulator CPU | poll lateness p99 | load 1 min (start → end) |",
        "|" + "---|" * 15,
    ]
    for r in section["rows"]:
        cpu = ", ".join(f"{h.split('@')[0]}: {v:.0%}" for h, v in r["node_cpu_share"].items() if v)
        tasks = ", ".join(f"{h.split('@')[0]}: {v:,}" for h, v in r["tasks_per_node"].items())
        sim_cpu = r.get("simulator_cpu_share")
        lines.append(
            f"| {r['broker']} | {r['nodes']} x {r['threads_per_node']} | {r['n']:,} | "
            f"{r['terminal']:,} | {r['lost']} | {r['doubled']} | {_failures(r)} | "
            f"{_f(r['wall_s'])} | {_f(r['runs_per_s'])} | {_f(r['api_calls_per_s'])} | {tasks} | "
            f"{cpu} | {'–' if sim_cpu is None else f'{sim_cpu:.0%}'} | "
            f"{_f((r.get('lateness_p99_ms') or {}).get('poll_run'), ' ms')} | "
            f"{load_cell(r['load'])} |"
        )
    lines += ["", "| broker | two nodes / one node (runs/s) | aim | 0 lost, 0 doubled | met |"]
    lines.append("|---|---|---|---|---|")
    for c in section["ratios"]:
        lines.append(
            f"| {c['broker']} | {_f(c['throughput_ratio'], 'x')} | >= {c['aim']}x | "
            f"{'yes' if c['zero_lost_zero_doubled'] else '**no**'} | "
            f"{'yes' if c['met'] else '**no**'} |"
        )
    return lines


def rabbit_lines(section: dict[str, Any]) -> list[str]:
    lines = [
        "| broker | N | terminal | lost | doubled | task errors / retries | retrieves per run "
        "(schedule predicts) | detection p50 / p99 | poll lateness p99 | wall s (x longest) "
        "| load 1 min (start → end) |",
        "|" + "---|" * 11,
    ]
    for r in section["rows"]:
        poll = (r.get("tasks") or {}).get("poll_run") or {}
        wall = r.get("wall_s")
        x = f" ({wall / r['longest_run_s']:.2f}x)" if wall else ""
        lines.append(
            f"| {_broker(r)} | {r['n']:,} | {r['terminal']:,} | {r['lost']} | {r['doubled']} | "
            f"{_failures(r)} | {r['calls_per_run']['retrieve']:.2f} "
            f"({r['schedule_predicts_retrieves_per_run']:.2f}) | "
            f"{_f(r['detection_ms']['p50'])} / {_f(r['detection_ms']['p99'])} ms | "
            f"{_f((poll.get('lateness_ms') or {}).get('p99'), ' ms')} | {_f(wall)}{x} | "
            f"{load_cell(r.get('load'))} |"
        )
    for how in dict.fromkeys(tuple(notes(r)) for r in section["rows"]):
        at = [r for r in section["rows"] if tuple(notes(r)) == how]
        base = next((r for r in at if r["broker"] == "redis"), None)
        rabbit = next((r for r in at if r["broker"] == "rabbitmq"), None)
        if base and rabbit and base.get("wall_s") and rabbit.get("wall_s"):
            retrieves = rabbit["calls_per_run"]["retrieve"] / base["calls_per_run"]["retrieve"]
            p99 = _ratio(rabbit["detection_ms"]["p99"], base["detection_ms"]["p99"])
            where = ", ".join(how) or "shared queues"
            lines += [
                "",
                f"RabbitMQ against Redis in the same invocation ({where}): retrieves per "
                f"run {retrieves:.2f}x, detection p99 {p99}, "
                f"wall {rabbit['wall_s'] / base['wall_s']:.2f}x.",
            ]
    return lines


def _broker(row: dict[str, Any]) -> str:
    """The broker, with the queue topology and poll mode where not the defaults."""
    return ", ".join([row["broker"], *notes(row)])


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "–"


def tick_lines(t: dict[str, Any]) -> list[str]:
    bare, poll = t["bare"], t["poll"]
    return [
        f"{t['workers']} worker process(es) x {t['threads']} threads, {t['chains']} chains in "
        f"flight, countdown {t['countdown_s']} s, simulator latency 0; load "
        f"{load_cell(t['load'])}.",
        "",
        "| tick | ticks/s | worker CPU per tick | worker CPU (share of a core) | queries per tick "
        "| retrieves per tick |",
        "|---|---|---|---|---|---|",
        f"| bare countdown task (`bench.bare_tick`) | {_f(bare['ticks_per_s'])} | "
        f"{_f(bare['worker_cpu_ms_per_tick'], ' ms')} | {bare['worker_cpu_share']:.0%} | 0 | 0 |",
        f"| real poll tick (`runs.poll_run`) | {_f(poll['ticks_per_s'])} | "
        f"{_f(poll['worker_cpu_ms_per_tick'], ' ms')} (task body p50 "
        f"{_f(poll.get('task_cpu_ms_p50'), ' ms')}) | {poll['worker_cpu_share']:.0%} | "
        f"{_f(poll.get('queries_per_tick'))} | {_f(poll['retrieves_per_tick'])} |",
        *_batched_row(t.get("batched")),
        "",
        f"**Ratio: {_f(t['ratio'], 'x')}** (aim >= {t['aim']}x: "
        f"{'met' if t['met'] else '**not met**'}){_pairs_note(t)}.",
        *(
            [
                "",
                f"Batched polling (`RUNS_POLL_MODE=batched`, {t['batched']['runs']:,} runs in "
                "progress, each due again once written; `runs.poll_due` sent every 0.5 s as beat "
                "would): a tick is one retrieve and its share of a batch's claim and write, "
                f"**{_f(t['batched_ratio'], 'x')}** the bare task's rate "
                f"({_f(t.get('batched_bare_ticks_per_s') or t['bare']['ticks_per_s'])}/s, the "
                "median of the pairs' bare rates); load "
                f"{load_cell(t['batched'].get('load') or t['load'])}.",
            ]
            if t.get("batched")
            else []
        ),
    ]


def pair_ratios(t: dict[str, Any]) -> str:
    """Each pair's tick ratio ("0.34x, 0.34x, 0.38x"), or "" for a tick measured once; the
    scale-out report and the scorecard both say which pair their figures are."""
    ratios = t.get("pair_ratios") or []
    return ", ".join(_f(r, "x") for r in ratios) if len(ratios) > 1 else ""


def _pairs_note(t: dict[str, Any]) -> str:
    """Which pair the figures above are, when there were several (bench/tick_rate.py says why)."""
    each = pair_ratios(t)
    if not each:
        return ""
    n = len(t["pair_ratios"])
    return f": the pair with the median ratio of {n} (each: {each}), its rows above"


def _batched_row(b: dict[str, Any] | None) -> list[str]:
    if not b:
        return []
    return [
        f"| batched poll tick (`runs.poll_due`, per retrieve) | {_f(b['ticks_per_s'])} | "
        f"{_f(b['worker_cpu_ms_per_tick'], ' ms')} | {b['worker_cpu_share']:.0%} | – | 1.00 |"
    ]


def write_markdown(path: Path, results: dict[str, Any]) -> None:
    m = results["machine"]
    lines = [
        "# Scale-out, RabbitMQ and tick rate (issue 13)",
        "",
        f"Generated by `{results['command']}` on {results['generated_at']} ({m['cores']} cores, "
        f"load {m['load1_at_start']} at start; {results['database']}). Every figure is a ratio "
        "against a baseline measured in the same invocation; the machine is shared, so the load "
        "average is printed beside each row and a row above the core count is flagged (⚠).",
        "",
    ]
    if "scale_out" in results:
        s = results["scale_out"]
        lines += [
            "## Two worker nodes against one",
            "",
            f"Each node is one Celery worker process (threads pool, its own `-n` hostname); the "
            f"nodes share one broker and one PostgreSQL database. Runs by polling, each "
            f"{s['run_s']} s long at the simulator, which answers every API call after "
            f"{s['simulator_latency_ms']:.0f} ms, so a node is bound by its slots (see its CPU "
            "share). *Lost*: not terminal by the cap; *doubled*: created more than once at the "
            "simulator.",
            "",
            *scale_lines(s),
            "",
        ]
    if "rabbit_1000" in results:
        lines += [
            "## 1,000 runs by polling on RabbitMQ (and the same runs on Redis)",
            "",
            f"Durations {_durations(results['rabbit_1000'].get('shape', {}))}; 2 worker "
            "processes x 8 threads. "
            "Live status and the request budget use Redis in both rows (`RUNS_PUBSUB_URL`, "
            "`RUNS_BUDGET_REDIS_URL` set explicitly).",
            "",
            *rabbit_lines(results["rabbit_1000"]),
            "",
        ]
    if "tick_rate" in results:
        lines += ["## Tick rate", "", *tick_lines(results["tick_rate"]), ""]
    if results.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    path.write_text("\n".join(lines))


def _durations(shape: dict[str, Any]) -> str:
    if shape.get("durations") == "uniform":
        return f"uniform in [{shape['min_s']:g}, {shape['max_s']:g}] s"
    return "log-normal around 8 s within [5, 20] s"


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.scale_report docs/bench/scale_out.json``: redo the Markdown only."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    write_markdown(args.results.with_suffix(".md"), json.loads(args.results.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
