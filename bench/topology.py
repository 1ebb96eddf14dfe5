"""Which queues each bench worker consumes: every queue on every worker, or wakes apart from starts.

The issue's workload fixes two worker processes of 8 threads "however their queues are
assigned", so the assignment is a variable to measure, not a given:

* ``shared``: every worker consumes every queue (``make worker`` on each). A wake, a due poll and
  a start compete for the same slots, and a countdown poll a worker holds waits for one of *its*
  slots when it falls due, behind whatever starts it is running.
* ``split``: the production topology of docs/operations.md. The first worker consumes wakes,
  scheduled polls and the default queue (the sweep, batched polling's ``runs.poll_due``); the
  others consume starts and tool execution, with chunked starts (``RUNS_START_CHUNK``) and a
  lower CPU priority (``nice``), so a burst of starts takes the CPU the wakes, the web process and
  the polls leave, instead of taking it from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOPOLOGIES = ("shared", "split")


@dataclass(frozen=True)
class Role:
    """One worker process's share of the work."""

    name: str
    #: ``-Q`` for the worker; ``None`` consumes every queue the project declares.
    queues: tuple[str, ...] | None = None
    #: Added to the worker's niceness (0: the same CPU priority as everything else).
    nice: int = 0
    #: ``RUNS_START_CHUNK`` for this worker; ``None`` keeps the invocation's.
    start_chunk: int | None = None


def notes(row: dict[str, Any]) -> list[str]:
    """How a result row ran where not as by default: ``["split queues", "per-run polls"]``.
    A row's polls are noted unless they are its strategy's default (``polled``)."""
    shape = row.get("topology", "shared")
    how = polled(row)
    return ([] if shape == "shared" else [f"{shape} queues"]) + (
        [how] if how and how not in _DEFAULT_POLLS.get(row.get("strategy"), ()) else []
    )


def polled(row: dict[str, Any]) -> str:
    """How a row's runs were polled, in words; ``""`` for the loops that are not ours (tutorial,
    SDK). A webhook run's polls are its safety nets. A row measured before a setting existed
    has no value for it and ran as the code then did: every poll a countdown task per run."""
    strategy, mode = row.get("strategy"), row.get("poll_mode", "per_run")
    if strategy == "webhook":
        # RUNS_SAFETY_NET_MODE alone decides for webhook runs (``runs.poll_modes.mode``); before
        # it existed, RUNS_POLL_MODE did.
        net = row.get("safety_net_mode")
        if net is None:
            return "batched polls" if mode == "batched" else "per-run polls"
        return "safety nets by due time" if net == "batched" else "per-run safety nets"
    if strategy != "countdown":
        return ""
    return f"{mode.replace('_', '-')} polls"


#: What ``notes`` leaves unsaid: the demo project's settings ("auto" polls, safety nets by
#: due time), and a webhook row from before RUNS_SAFETY_NET_MODE.
_DEFAULT_POLLS = {
    "countdown": ("auto polls",),
    "webhook": ("safety nets by due time", "per-run polls"),
}


def roles(topology: str, workers: int, *, starts_nice: int, split_chunk: int) -> list[Role]:
    """A role per worker process for ``topology``."""
    if topology == "shared":
        return [Role("all")] * workers
    if topology != "split":
        raise ValueError(f"unknown topology {topology!r}; choose from {', '.join(TOPOLOGIES)}")
    if workers < 2:
        raise ValueError("the split topology needs at least 2 workers (wakes, then starts)")
    queues = _queues()
    wakes = Role("wakes", (queues["wake"], queues["default"], queues["poll"]))
    starts = Role(
        "starts", (queues["start"], queues["tool"]), nice=starts_nice, start_chunk=split_chunk
    )
    return [wakes, *[starts] * (workers - 1)]


def _queues() -> dict[str, str]:
    """The queue names the children use (the bench shares their settings)."""
    from django.conf import settings

    from project.celery import app

    named = {kind: name for kind, name in dict(settings.RUNS_QUEUES).items() if name}
    if len(named) != 4:
        raise ValueError("the split topology needs RUNS_QUEUE_PREFIX set (a queue per kind)")
    return {**named, "default": app.conf.task_default_queue}
