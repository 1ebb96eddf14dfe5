"""Issue 13's "done when" rows, read from the JSON that one ``make bench`` run wrote.

Why a module of its own: each part of the run (N = 1,000, N = 10,000, the start rate, the
scale-out) writes its own report with its own tables; the aims cut across them. This module only
reads those files and judges, so a row's definition can be fixed and the page redone
(``python -m bench.scorecard --compile-only``) without measuring again. Every row names its
baseline, measured in the same run, and carries the machine's load while it was measured.
"""

from __future__ import annotations

from typing import Any

from . import stats
from .topology import notes, polled
from .verdicts import POLL_CAP_S, sim_kept_up
from .workload import Shape, ended_floor, make_workload

WEBHOOK_P99_MS = 250.0
ALL_ENDED_X = 1.2
START_RATE_X = 0.5
POLL_P99_MS = (POLL_CAP_S + 1) * 1000
N10K_WEBHOOK_P99_MS = 1000.0
INTAKE_X = 0.8


def row(
    aim: str,
    where: str,
    measured: str,
    *,
    baseline: str = "",
    ratio: float | None = None,
    met: bool | None = None,
    load: dict[str, Any] | None = None,
    source: str = "",
) -> dict[str, Any]:
    """One line of the scorecard; ``met`` is None where the issue asks for a report, not a bar."""
    return {
        "aim": aim,
        "where": where,
        "measured": measured,
        "baseline": baseline,
        "ratio": None if ratio is None else round(ratio, 3),
        "met": met,
        "load": load,
        "source": source,
    }


def ratio_of(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def where_of(s: dict[str, Any]) -> str:
    return ", ".join([f"N={s['n']:,}", *notes(s)])


def n1000_rows(
    results: dict[str, Any], bare_rate: float | None, source: str
) -> list[dict[str, Any]]:
    """Detection and ending at N = 1,000, against the tutorial loop of the same run; intake.

    "All ended" also names its floor: the same runs created at the bare SDK loop's rate.
    """
    sc = [s for s in results["scenarios"] if s["n"] == 1000]
    base = next((s for s in sc if s["strategy"] == "tutorial"), None)
    bp99 = base["detection_ms"]["p99"] if base else None
    bend = ratio_of(base["wall_s"], base["longest_run_s"]) if base else None
    floor = _floor(results, bare_rate)
    base_p99 = f"tutorial loop p99 {bp99:,.0f} ms" if bp99 is not None else ""
    out = []
    for s in (x for x in sc if x["strategy"] == "webhook"):
        p99 = s["detection_ms"]["p99"]
        out.append(
            row(
                f"N = 1,000 by webhook: detection p99 <= {WEBHOOK_P99_MS:,.0f} ms",
                where_of(s),
                _ms(p99),
                baseline=base_p99,
                ratio=ratio_of(p99, bp99),
                met=bool(s["finished"]) and p99 is not None and p99 <= WEBHOOK_P99_MS,
                load=s.get("load"),
                source=source,
            )
        )
        ended = ratio_of(s["wall_s"], s["longest_run_s"])
        out.append(
            row(
                f"N = 1,000 by webhook: all ended <= {ALL_ENDED_X}x the longest run",
                where_of(s),
                f"{s['wall_s']} s for a longest run of {s['longest_run_s']} s = {ended:.2f}x",
                baseline=(f"tutorial loop {bend:.2f}x" if bend else "")
                + (f"; created at the bare SDK loop's rate, {floor:.2f}x" if floor else ""),
                ratio=ratio_of(s["wall_s"], base["wall_s"] if base else None),
                met=bool(s["finished"]) and ended is not None and ended <= ALL_ENDED_X,
                load=s.get("load"),
                source=source,
            )
        )
    for s in (x for x in sc if x["strategy"] == "countdown"):
        p99 = s["detection_ms"]["p99"]
        out.append(
            row(
                f"N = 1,000 by polling: detection p99 <= the schedule's cap + 1 s "
                f"({POLL_P99_MS:,.0f} ms)",
                where_of(s),
                _ms(p99),
                baseline=base_p99,
                ratio=ratio_of(p99, bp99),
                met=bool(s["finished"]) and p99 is not None and p99 <= POLL_P99_MS,
                load=s.get("load"),
                source=source,
            )
        )
    intake = results.get("intake") or {}
    for key in ("http", "http_asyncio"):
        http = intake.get(key)
        if not http:
            continue
        # Results from before the loop was named were all taken on asyncio. The aim is judged on
        # the loop the web processes run; asyncio's row is a report beside it (its bare view
        # waited on Nagle's algorithm, docs/operations.md, "The web processes' event loop").
        loop = http.get("server", "asyncio")
        judged = key == "http"
        same = http.get("bare_same_path_per_s")
        if same:
            # The intake runs on Django's WSGI handler in a thread pool (runs/intake/asgi.py):
            # judged against the bare view served the same way, like for like; the bare view on
            # the ASGI handler, the yardstick before the intake had a path of its own, beside it.
            out.append(
                row(
                    f"Intake >= {INTAKE_X}x the bare view over HTTP",
                    f"signed events through uvicorn on {loop}; both views on the intake's own "
                    "path (Django's WSGI handler in a thread pool)",
                    f"{http['signed_per_s']}/s",
                    baseline=f"bare view {same}/s",
                    ratio=http["ratio_same_path"],
                    met=http["ratio_same_path"] >= INTAKE_X if judged else None,
                    load=intake.get("load"),
                    source=source,
                )
            )
        out.append(
            row(
                f"Intake >= {INTAKE_X}x the bare view over HTTP" + (" (report)" if same else ""),
                f"signed events through uvicorn on {loop}"
                + ("; the bare view on Django's ASGI handler" if same else ""),
                f"{http['signed_per_s']}/s",
                baseline=f"bare view {http['bare_per_s']}/s",
                ratio=http["ratio"],
                met=http["ratio"] >= INTAKE_X if judged and not same else None,
                load=intake.get("load"),
                source=source,
            )
        )
    return out


def _floor(results: dict[str, Any], bare_rate: float | None) -> float | None:
    """``workload.ended_floor`` for the N = 1,000 runs of ``results``, drawn again by seed."""
    if not bare_rate or "workload_shape" not in results:
        return None
    plans = make_workload(1000, results["config"]["seed"], Shape(**results["workload_shape"]))
    return ended_floor(plans, bare_rate)


#: How a start-rate row's ``--poll-modes`` value reads in the scorecard.
POLL_MODE_WORDS = {
    "default": "the app's poll settings (a webhook run's safety net by due time, as batched "
    "polls have it)",
    "per_run": "per-run polls (a countdown task per run)",
    "batched": "batched polls",
    "auto": "auto polls (per run until a poll runs late, then batched)",
}


def start_rate_rows(results: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Starts through Celery against the bare SDK loop, each pair measured back to back."""
    out = []
    for pair in results["pairs"]:
        bare, ours = pair["bare"], pair["ours"]
        strategy = ours.get("strategy", "webhook")
        ratio = ratio_of(ours["starts_per_s"], bare["starts_per_s"])
        complete = ours["submitted"] == ours["n"]
        out.append(
            row(
                f"Start throughput >= {START_RATE_X}x the bare SDK loop",
                f"N={ours['n']:,}, {strategy}, RUNS_START_CHUNK {ours['chunk']}, "
                f"{POLL_MODE_WORDS.get(ours.get('poll_mode', 'per_run'), ours.get('poll_mode'))}, "
                f"{ours['threads']} slots" + _pairs_words(pair),
                f"{ours['starts_per_s']}/s"
                + ("" if complete else f" ({ours['submitted']} of {ours['n']} started)"),
                baseline=f"bare loop {bare['starts_per_s']}/s ({bare['threads']} threads)",
                ratio=ratio,
                met=(complete and ratio is not None and ratio >= START_RATE_X)
                if strategy == "webhook"
                else None,
                load=ours.get("load"),
                source=source,
            )
        )
    return out


def _pairs_words(pair: dict[str, Any]) -> str:
    """The words a row measured more than once gets: ", median of 3 pairs (0.52x, ...)"."""
    ratios = pair.get("pair_ratios", [])
    if len(ratios) < 2:
        return ""
    return f", median of {len(ratios)} pairs ({stats.ratios_text(ratios)})"


def bare_start_rate(start_rate: dict[str, Any] | None) -> float | None:
    """The bare SDK loop's best starts/s in the run: the baseline of the N = 10,000 start rate."""
    reported = (start_rate or {}).get("pairs", [])
    every = [*reported, *(other for p in reported for other in p.get("other_pairs", []))]
    rates = [p["bare"]["starts_per_s"] for p in every]
    return max(rates) if rates else None


def n10000_rows(
    results: dict[str, Any], n1000: dict[str, Any] | None, bare_rate: float | None, source: str
) -> list[dict[str, Any]]:
    """Every run ended, detection, start rate and what bounds them at N = 10,000."""
    out = []
    for s in (x for x in results["scenarios"] if x["n"] == 10000):
        where = f"{where_of(s)}, {s['strategy']}"
        out.append(
            row(
                "N = 10,000: every run ended",
                where,
                f"{s['terminal']:,} of {s['n']:,} in {s['wall_s']} s",
                baseline=f"the longest run, {s['longest_run_s']} s",
                ratio=ratio_of(s["wall_s"], s["longest_run_s"]),
                met=bool(s["finished"]),
                load=s.get("load"),
                source=source,
            )
        )
        p99 = s["detection_ms"]["p99"]
        small = _same_at_1000(s, n1000)
        small_p99 = small["detection_ms"]["p99"] if small else None
        if s["strategy"] == "webhook":
            out.append(
                row(
                    f"N = 10,000 by webhook: detection p99 <= {N10K_WEBHOOK_P99_MS:,.0f} ms (aim)",
                    where,
                    _ms(p99),
                    baseline=f"{_labelled(small)}: {small_p99:,.0f} ms"
                    if small and small_p99
                    else "",
                    ratio=ratio_of(p99, small_p99),
                    met=bool(s["finished"]) and p99 is not None and p99 <= N10K_WEBHOOK_P99_MS,
                    load=s.get("load"),
                    source=source,
                )
            )
        last = (s.get("start_lag_ms") or {}).get("max")
        rate = ratio_of(float(s["n"]), last / 1000 if last else None)
        out.append(
            row(
                "N = 10,000: start rate (report)",
                where,
                f"{rate:,.1f} starts/s" if rate else "–",
                baseline=f"bare SDK loop {bare_rate}/s (start-rate part)" if bare_rate else "",
                ratio=ratio_of(rate, bare_rate),
                load=s.get("load"),
                source=source,
            )
        )
        out.append(
            row(
                "N = 10,000: what bounds it (report)",
                where,
                bounds(s),
                load=s.get("load"),
                source=source,
            )
        )
    return out


def _labelled(s: dict[str, Any]) -> str:
    """A baseline row named with how it was polled, said once (``where_of`` notes it already
    where that is not the default)."""
    how = polled(s)
    return where_of(s) if not how or how in notes(s) else f"{where_of(s)} ({how})"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _same_at_1000(s: dict[str, Any], n1000: dict[str, Any] | None) -> dict[str, Any] | None:
    """The N = 1,000 row of ``s``'s strategy and queues, in ``s``'s poll mode if there is one
    (the N = 1,000 part runs per-run polls only)."""
    rows = [
        x
        for x in (n1000 or {}).get("scenarios", [])
        if x["n"] == 1000
        and (x["strategy"], x.get("topology", "shared")) == (s["strategy"], s.get("topology"))
    ]
    mode = s.get("poll_mode", "per_run")
    return next((x for x in rows if x.get("poll_mode", "per_run") == mode), None) or next(
        iter(rows), None
    )


def bounds(s: dict[str, Any]) -> str:
    """CPU per process group as cores over the row's wall time, busiest first; the simulator."""
    wall = s.get("wall_s") or 0.0
    procs = s.get("processes") or {}
    shares = sorted(
        ((name, p.get("cpu_s", 0.0) / wall) for name, p in procs.items() if wall),
        key=lambda item: -item[1],
    )
    kept, evidence = sim_kept_up(s)
    cpu = ", ".join(f"{name} {share:.2f}" for name, share in shares if share >= 0.01)
    sim = "kept up" if kept else "fell behind"
    return f"cores used: {cpu}; simulator {sim} ({evidence})"
