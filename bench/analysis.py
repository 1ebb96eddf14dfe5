"""Turning what the simulator counted and what we saw into one scenario's figures.

The simulator is the referee: API calls are counted on its side (``/_sim/stats``), and a run's
remote terminal time is its ``terminal_at``. Our side only contributes when it noticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runs.schedule import TUTORIAL

from .stats import summarize
from .workload import Plan

#: The per-call price the tutorial quotes.
PRICE_PER_CALL = 0.00015
CREATE_KINDS = {"responses.create", "threads.runs.create"}
RETRIEVE_KINDS = {"responses.retrieve", "threads.runs.retrieve"}


def calls_by_kind(calls: Mapping[str, int]) -> dict[str, int]:
    """create / retrieve / other totals from the simulator's ``calls`` counter."""
    create = sum(v for k, v in calls.items() if k in CREATE_KINDS)
    retrieve = sum(v for k, v in calls.items() if k in RETRIEVE_KINDS)
    other = sum(calls.values()) - create - retrieve
    return {"create": create, "retrieve": retrieve, "other": other}


def other_detail(calls: Mapping[str, int]) -> dict[str, int]:
    """The calls counted as "other", by name (conversation/thread creates, cancels...)."""
    return {
        k: v for k, v in calls.items() if v and k not in CREATE_KINDS and k not in RETRIEVE_KINDS
    }


def detection(
    seen: Iterable[tuple[str, str, str, float | None]], objects: Mapping[str, Mapping[str, Any]]
) -> tuple[list[float], dict[str, int], list[int]]:
    """Latencies (s), status counts, and retrieves of each completed run.

    ``seen`` holds (run key, final remote id, our status, epoch time we saw it terminal or None).
    A run's retrieves add up every response/run object created for it (a tool round creates a
    new response), found by the ``run_id`` metadata the simulator records.
    """
    retrieves: dict[str, int] = {}
    for obj in objects.values():
        key = obj.get("metadata_run_id")
        if key is not None and obj.get("kind") in ("response", "run"):
            retrieves[key] = retrieves.get(key, 0) + int(obj.get("retrieve", 0))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    completed_retrieves: list[int] = []
    for key, remote_id, status, seen_at in seen:
        statuses[status] = statuses.get(status, 0) + 1
        terminal_at = (objects.get(remote_id) or {}).get("terminal_at")
        if seen_at is not None and terminal_at is not None:
            latencies.append(seen_at - float(terminal_at))
        if status == "completed":
            completed_retrieves.append(retrieves.get(key, 0))
    return latencies, statuses, completed_retrieves


def webhook_legs(
    seen: Iterable[tuple[str, str, str, float | None]],
    objects: Mapping[str, Mapping[str, Any]],
    received: Mapping[str, float],
) -> dict[str, Any]:
    """Webhook detection in two legs: the delivery (the simulator's terminal moment to our view
    stamping the event's ``received_at``, just before its INSERT) and ours after it (that stamp
    to the run's row terminal: the INSERT, the wake's publish, the queue, the poll).

    ``received`` maps a remote id to its first event's ``received_at`` (epoch). Which leg is long
    says whether to look at the sender and the web process's queue of requests, or at our intake
    statement, the wake and the worker.
    """
    delivery: list[float] = []
    ours: list[float] = []
    for _key, remote_id, _status, seen_at in seen:
        terminal_at = (objects.get(remote_id) or {}).get("terminal_at")
        got = received.get(remote_id)
        if got is None or terminal_at is None:
            continue
        delivery.append(got - float(terminal_at))
        if seen_at is not None:
            ours.append(seen_at - got)
    return {
        "delivery_ms": summarize(delivery, 1000.0, 1),
        "intake_to_end_ms": summarize(ours, 1000.0, 1),
    }


#: Terminal statuses, ours and the Assistants API's (strategy 2 reports the remote status).
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})


def terminal_count(statuses: Mapping[str, int]) -> int:
    """How many runs ended (a run still ``queued`` at the cap, a timeout or an error did not)."""
    return sum(v for k, v in statuses.items() if k in TERMINAL_STATUSES)


def predicted_retrieves(plans: list[Plan]) -> float:
    """Retrieves per run the tutorial schedule predicts for these durations (no jitter)."""
    return sum(TUTORIAL.predicted_polls(p.duration_s) for p in plans) / len(plans)


def figures(
    *,
    plans: list[Plan],
    sim_stats: Mapping[str, Any],
    seen: list[tuple[str, str, str, float | None]],
    started_at: float,
    tool_rounds: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The figures every strategy reports, from the simulator's counts and what we saw."""
    n = len(plans)
    calls = sim_stats.get("calls", {})
    kinds = calls_by_kind(calls)
    total = sum(kinds.values())
    latencies, statuses, completed_retrieves = detection(seen, sim_stats.get("objects", {}))
    seen_times = [t for *_, t in seen if t is not None]
    rounds = tool_rounds or {}
    creates = sim_stats.get("creates_by_run_id", {})
    terminal = terminal_count(statuses)
    return {
        "n": n,
        "terminal": terminal,
        "statuses": statuses,
        "calls": kinds,
        "calls_other_detail": other_detail(calls),
        "calls_per_run": {k: round(v / n, 3) for k, v in kinds.items()}
        | {"total": round(total / n, 3)},
        "retrieves_per_completed_run": (
            round(sum(completed_retrieves) / len(completed_retrieves), 3)
            if completed_retrieves
            else None
        ),
        "schedule_predicts_retrieves_per_run": round(predicted_retrieves(plans), 3),
        "detection_ms": summarize(latencies, 1000.0, 1),
        "wall_s": round(max(seen_times) - started_at, 2) if seen_times else None,
        "longest_run_s": max(p.duration_s for p in plans),
        "cost_per_million_runs_usd": round(total / n * PRICE_PER_CALL * 1e6, 2),
        "sim_latency": sim_stats.get("latency", {}),
        "sim_webhooks": sim_stats.get("webhooks", {}),
        # A tool round is one more create, on purpose; anything beyond is a duplicate.
        "duplicate_creates": sum(1 for k, c in creates.items() if c > 1 + rounds.get(k, 0)),
    }
