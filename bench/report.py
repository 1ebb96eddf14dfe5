"""Writing results: the JSON (everything) and a Markdown page (the tables people read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .load import cell as load_cell
from .load import flag as load_flag
from .scenario import label
from .verdicts import sim_kept_up


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=False, default=str) + "\n")


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return text + suffix


def _lateness(s: dict[str, Any]) -> str:
    poll = (s.get("tasks") or {}).get("poll_run")
    return _fmt((poll or {}).get("lateness_ms", {}).get("p99"), " ms") if poll else "–"


def scenario_table(scenarios: list[dict[str, Any]]) -> list[str]:
    head = (
        "| strategy | N | done | create / retrieve / other per run | retrieves per completed run "
        "| detection p50 / p99 | poll lateness p99 | slots (threads) | worker CPU s | "
        "peak RSS MB | wall s (x longest) | peak calls/s | $ per 1M runs | simulator kept up "
        "| load 1 min (start → end) |"
    )
    rows = [head, "|" + "---|" * 15]
    for s in scenarios:
        c = s["calls_per_run"]
        worker = s.get("processes", {}).get("worker", {})
        web = s.get("processes", {}).get("web")
        cpu = worker.get("cpu_s")
        rss = worker.get("peak_rss_mb")
        if web:
            cpu_text = f"{_fmt(cpu)} (+ web {_fmt(web['cpu_s'])})"
            rss_text = f"{_fmt(rss)} (+ web {_fmt(web['peak_rss_mb'])})"
        else:
            cpu_text, rss_text = _fmt(cpu), _fmt(rss)
        wall = s.get("wall_s")
        x = f" ({wall / s['longest_run_s']:.2f}x)" if wall else ""
        ok, evidence = sim_kept_up(s)
        rows.append(
            "| "
            + " | ".join(
                [
                    label(s),
                    f"{s['n']:,}",
                    f"{s['terminal']:,}" + ("" if s["finished"] else " **(not all)**"),
                    f"{c['create']:.2f} / {c['retrieve']:.2f} / {c['other']:.2f}",
                    _fmt(s.get("retrieves_per_completed_run")),
                    f"{_fmt(s['detection_ms']['p50'])} / {_fmt(s['detection_ms']['p99'])} ms",
                    _lateness(s),
                    f"{s['slots']:,} ({worker.get('peak_threads', '–')})",
                    cpu_text,
                    rss_text,
                    _fmt(wall) + x,
                    _fmt(s["sim_pace"]["peak_calls_per_s"]),
                    _fmt(s["cost_per_million_runs_usd"]),
                    ("yes" if ok else "**no**") + f" ({evidence})",
                    load_cell(s.get("load")),
                ]
            )
            + " |"
        )
    return rows


def ratio_table(ratios: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| N | strategy | baseline | API calls | retrieves | detection p99 | worker CPU | "
        "peak RSS | slots | wall |",
        "|" + "---|" * 10,
    ]
    for r in ratios:
        rows.append(
            f"| {r['n']:,} | {label(r)} | {r['baseline']} | "
            + " | ".join(
                _fmt(r[k], "x")
                for k in ("calls", "retrieves", "detection_p99", "cpu", "rss", "slots", "wall")
            )
            + " |"
        )
    return rows


def intake_lines(intake: dict[str, Any]) -> list[str]:
    rows = [
        "| measured | bare Django view | webhook view (signed) | ratio "
        "| load 1 min (start → end) |",
        "|---|---|---|---|---|",
    ]
    for key in ("inprocess", "http", "http_asyncio"):
        m = intake.get(key)
        if m:
            rows.append(
                f"| {m['how']} | {m['bare_per_s']:,.0f}/s | {m['signed_per_s']:,.0f}/s "
                f"| {m['ratio']:.2f} | {load_cell(intake.get('load'))} |"
            )
    for key in ("http", "http_asyncio"):
        m = intake.get(key) or {}
        if m.get("bare_same_path_per_s"):
            rows += [
                "",
                f"On {_server(m)}, the bare view served the way the intake is (Django's WSGI "
                "handler on a thread pool, runs/intake/asgi.py): "
                f"{m['bare_same_path_per_s']:,.0f}/s; signed events against it: "
                f"{m['ratio_same_path']:.2f}x.",
            ]
    cpu = (intake.get("inprocess") or {}).get("cpu_ms_per_request")
    if cpu:
        rows += [
            "",
            f"CPU per request in-process (the handler's own thread): the webhook view "
            f"{cpu['signed']:.2f} ms, the bare view {cpu['bare']:.2f} ms.",
        ]
    fast, slow = intake.get("http"), intake.get("http_asyncio")
    if fast and slow and slow["signed_per_s"] and slow["bare_per_s"]:
        rows += [
            "",
            f"The same views on the two event loops, rounds alternating: signed events "
            f"{fast['signed_per_s'] / slow['signed_per_s']:.2f}x, the bare view "
            f"{fast['bare_per_s'] / slow['bare_per_s']:.2f}x on {_server(fast)} against "
            f"{_server(slow)}.",
        ]
    return rows


def _server(measured: dict[str, Any]) -> str:
    return measured.get("server", "asyncio")  # results from before the loop was named


def aims_lines(aims: list[dict[str, Any]]) -> list[str]:
    rows = ["| aim | measured | met |", "|---|---|---|"]
    for a in aims:
        met = {True: "yes", False: "**no**", None: "–"}[a["met"]]
        note = f" ({a['note']})" if a.get("note") else ""
        rows.append(f"| {a['aim']} | {a['measured']}{note} | {met} |")
    return rows


def tick_lines(scenarios: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| strategy | N | poll ticks | CPU per tick p50 / mean (task body) | worker CPU per run "
        "| worker CPU per retrieve |",
        "|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        poll = (s.get("tasks") or {}).get("poll_run")
        if not poll:
            continue
        cpu = s["processes"]["worker"]["cpu_s"]
        retrieves = s["calls"]["retrieve"] or 1
        rows.append(
            f"| {label(s)} | {s['n']:,} | {poll['tasks']:,} | "
            f"{_fmt(poll['cpu_ms']['p50'])} / {_fmt(poll['cpu_ms']['mean'])} ms | "
            f"{cpu / s['n'] * 1000:.1f} ms | {cpu / retrieves * 1000:.1f} ms |"
        )
    return rows


def _split_note(config: dict[str, Any]) -> str:
    """How the "split queues" rows assigned their workers (bench/topology.py), if any ran."""
    if "split" not in config.get("topologies", []):
        return ""
    return (
        " Rows marked *split queues*: one worker on wakes, the default queue and scheduled "
        "polls; the other on starts and tools, at nice "
        f"{config.get('starts_nice')}, with RUNS_START_CHUNK {config.get('split_start_chunk')}."
    )


def leg_lines(scenarios: list[dict[str, Any]]) -> list[str]:
    """Webhook detection in its two legs (``analysis.webhook_legs``), per webhook row."""
    rows = [
        "| strategy | N | detection p50 / p99 | delivery: simulator's end to our intake, p50 / p99 "
        "| ours: intake to the row terminal, p50 / p99 |",
        "|---|---|---|---|---|",
    ]
    for s in scenarios:
        legs = s.get("webhook_legs")
        if not legs:
            continue
        sent, ours, total = legs["delivery_ms"], legs["intake_to_end_ms"], s["detection_ms"]
        rows.append(
            f"| {label(s)} | {s['n']:,} | {_fmt(total['p50'])} / {_fmt(total['p99'])} ms | "
            f"{_fmt(sent['p50'])} / {_fmt(sent['p99'])} ms | "
            f"{_fmt(ours['p50'])} / {_fmt(ours['p99'])} ms |"
        )
    return rows if len(rows) > 2 else []


def busy_lines(results: dict[str, Any]) -> list[str]:
    """A warning above the tables when any row was measured on a machine busier than its cores."""
    flagged = [
        f"{label(s)}, N={s['n']:,} ({load_flag(s.get('load'))})"
        for s in results["scenarios"]
        if load_flag(s.get("load"))
    ]
    if not flagged:
        return []
    return [
        "**Measured on a busy machine:** the 1-minute load average was above the core count "
        "for " + "; ".join(flagged) + ". Those rows competed for CPU; compare them with care.",
        "",
    ]


def write_markdown(path: Path, results: dict[str, Any], title: str, plots: list[str]) -> None:
    w = results["workload_shape"]
    lines = [
        f"# {title}",
        "",
        f"Generated by `{results['command']}` on {results['generated_at']} "
        f"({results['machine']['cpus']} cores; {results['database']}). All strategies ran in the "
        "same invocation, one after another, against the same simulator; the machine is shared "
        "with other work, so read the **ratios**, not the absolute numbers.",
        "",
        f"Workload: N runs, {_durations(w)}, 90% completed, 4% failed, 3% incomplete, "
        f"3% cancelled; tool-call share {w['tool_share']:.0%}. Price ${results['price_per_call']} "
        "per API call. Celery strategies: "
        f"{results['config']['workers']} worker process(es) x {results['config']['threads']} "
        f"thread(s) (x {results['config'].get('threads_large')} threads for N > 1,000), "
        f"RUNS_START_CHUNK {results['config'].get('start_chunk', 1)}, "
        "PostgreSQL, a private Redis, beat; webhooks delivered by the simulator with no "
        f"added delay to uvicorn serving `project.asgi` "
        f"({results['config'].get('web_workers', 1)} process(es)"
        + (f", {results['config']['web_server']}" if results["config"].get("web_server") else "")
        + ")."
        + _split_note(results["config"]),
        "",
        "## Results",
        "",
        *busy_lines(results),
        *scenario_table(results["scenarios"]),
        "",
    ]
    if results.get("skipped"):
        lines += ["Skipped:", ""]
        lines += [f"- {label(s)}, N={s['n']:,}: {s['reason']}" for s in results["skipped"]]
        lines.append("")
    if results.get("ratios"):
        lines += ["## Side by side (ratio to the baseline in the same run; < 1 is better)", ""]
        lines += ratio_table(results["ratios"]) + [""]
    if any((s.get("tasks") or {}).get("poll_run") for s in results["scenarios"]):
        lines += ["## Poll-tick CPU cost", ""] + tick_lines(results["scenarios"]) + [""]
    if legs := leg_lines(results["scenarios"]):
        lines += ["## Where webhook detection goes", ""] + legs + [""]
    if results.get("intake"):
        lines += ["## Webhook intake", ""] + intake_lines(results["intake"]) + [""]
    if results.get("aims"):
        lines += ["## Against the aims (README.md)", ""] + aims_lines(results["aims"]) + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    lines += [
        "Columns: *detection* is the simulator's terminal time to the moment our side knew "
        "(`Run.completed_at` for Celery, the loop's return for the blocking ones); *poll "
        "lateness* is how long after its countdown a poll tick started (measured in the worker); "
        "*slots* are the worker slots held (Celery) or threads (one per run), with the peak "
        "thread count of the worker processes in brackets; *simulator kept up* judges the "
        "simulator's own health probe and CPU, so a slow row is not blamed on the project when "
        "the simulator was the bottleneck; *load* is the machine's 1-minute load average at the "
        "row's start and end (⚠ when above the core count: the row competed for CPU).",
        "",
    ]
    path.write_text("\n".join(lines))


def _durations(w: dict[str, Any]) -> str:
    if w.get("durations") == "uniform":
        return f"durations uniform in [{w['min_s']}, {w['max_s']}] s"
    return (
        f"log-normal durations (median {w['median_s']} s, sigma {w['sigma']}, "
        f"clipped to [{w['min_s']}, {w['max_s']}] s)"
    )
