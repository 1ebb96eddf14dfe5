"""Where we stand against the target figures (docs/bench/README.md), from one bench run."""

from __future__ import annotations

from typing import Any

from .topology import notes

#: The simulator is judged overloaded when its health probe (sampled every 0.5 s) is slow as a
#: rule (p50) or often (p99), or its CPU time is this share of the scenario's wall time (one
#: process, one core: it cannot do more). A lone spike while 1,000 threads connect at once is not
#: "could not keep up"; a p50 in tens of milliseconds is.
SIM_PROBE_P50_MS = 10.0
SIM_PROBE_P99_MS = 100.0
SIM_CPU_SHARE = 0.85
#: The poll schedule's cap (``RUNS_POLL_CAP_S``'s default): a poll at most this far apart.
POLL_CAP_S = 5.0


def sim_kept_up(s: dict[str, Any]) -> tuple[bool, str]:
    """Whether the simulator kept up during scenario ``s``, and the evidence."""
    probe = (s.get("sim_pace") or {}).get("probe_rtt_ms", {})
    p50, p99 = probe.get("p50"), probe.get("p99")
    cpu = (s.get("processes") or {}).get("simulator", {}).get("cpu_s", 0.0)
    wall = s.get("wall_s") or 0.0
    share = cpu / wall if wall else 0.0
    ok = (
        (p50 is None or p50 <= SIM_PROBE_P50_MS)
        and (p99 is None or p99 <= SIM_PROBE_P99_MS)
        and share <= SIM_CPU_SHARE
    )
    return ok, f"health p50/p99 {p50}/{p99} ms, CPU {share:.0%} of a core"


def _find(scenarios: list[dict[str, Any]], strategy: str, n: int) -> dict[str, Any] | None:
    return next((s for s in scenarios if s["strategy"] == strategy and s["n"] == n), None)


def _at(s: dict[str, Any]) -> str:
    """``N=1000``, with the queue topology and poll mode where a row has its own."""
    found = notes(s)
    return f"N={s['n']}" + (f" ({', '.join(found)})" if found else "")


def aims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per aim: the target, what we measured, met or not."""
    sc: list[dict[str, Any]] = results["scenarios"]
    out: list[dict[str, Any]] = []

    def add(aim: str, measured: str, met: bool | None, note: str = "") -> None:
        out.append({"aim": aim, "measured": measured, "met": met, "note": note})

    hooks = [s for s in sc if s["strategy"] == "webhook"]
    if hooks:
        worst = max(hooks, key=lambda s: s.get("retrieves_per_completed_run") or 0)
        value = worst.get("retrieves_per_completed_run")
        add(
            "webhook strategy <= 1.05 retrieves per completed run",
            ", ".join(f"{_at(s)}: {s.get('retrieves_per_completed_run')}" for s in hooks),
            value is not None and value <= 1.05,
        )
        p99s = [(_at(s), s["detection_ms"]["p99"]) for s in hooks]
        add(
            "webhook detection p99 <= 250 ms",
            ", ".join(f"{at}: {p} ms" for at, p in p99s),
            all(p is not None and p <= 250 for _, p in p99s),
        )
    for s in [x for x in sc if x["strategy"] in ("countdown", "webhook") and x["n"] == 1000]:
        if s.get("wall_s"):
            ratio = s["wall_s"] / s["longest_run_s"]
            add(
                f"1,000 concurrent runs on {s['slots']} worker slots in <= 1.2x the longest run "
                f"({s['strategy']}, {_at(s)})",
                f"{s['wall_s']} s for a longest run of {s['longest_run_s']} s = {ratio:.2f}x",
                ratio <= 1.2 and s["finished"],
            )
    for strategy in ("countdown", "webhook"):
        s = _find(sc, strategy, 10000)
        if s:
            add(
                f"10,000 concurrent runs tracked on this 2-core machine ({strategy})",
                f"{s['terminal']:,}/{s['n']:,} terminal within the {s.get('cap_s', '?')} s cap",
                bool(s["finished"]),
            )
    s = _find(sc, "countdown", 10000) or _find(
        sc, "countdown", max((x["n"] for x in sc), default=0)
    )
    if s:
        lateness = (s.get("tasks", {}).get("poll_run") or {}).get("lateness_ms", {}).get("p99")
        add(
            f"poll lateness p99 <= 1 s at 10,000 runs (measured at N={s['n']})",
            f"{lateness} ms",
            lateness is not None and lateness <= 1000 and s["n"] >= 10000,
        )
    polled = [x for x in sc if x["strategy"] == "countdown" and x["n"] == 1000]
    if polled:
        cap_ms = (POLL_CAP_S + 1) * 1000
        add(
            f"poll detection p99 <= the schedule's cap + 1 s ({cap_ms:,.0f} ms) at N=1000",
            ", ".join(f"{_at(s)}: {s['detection_ms']['p99']} ms" for s in polled),
            all((s["detection_ms"]["p99"] or 1e12) <= cap_ms for s in polled),
        )
    counts = [s for s in sc if s["strategy"] == "countdown"]
    if counts:
        parts, met = [], True
        for s in counts:
            got, want = s["calls_per_run"]["retrieve"], s["schedule_predicts_retrieves_per_run"]
            parts.append(f"{_at(s)}: {got} vs {want} ({got / want - 1:+.1%})")
            met = met and abs(got / want - 1) <= 0.02
        add(
            "poll strategy within 2% of the schedule's own retrieve count",
            "; ".join(parts),
            met,
            "the schedule's count is nominal (no jitter, no lateness)",
        )
    intake = results.get("intake", {}).get("http")
    if intake:
        add(
            ">= 1,000 signed events/s on 2 cores (over HTTP)",
            f"{intake['signed_per_s']}/s = {intake['ratio']:.2f}x the bare view's "
            f"{intake['bare_per_s']}/s",
            intake["signed_per_s"] >= 1000,
        )
    return out
