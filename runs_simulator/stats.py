"""Counters that let tests and benchmarks see what the client really did.

Why: the app under test must be judged by its effect on the remote side (how many
creates per logical run, how often it polled, how fast it noticed a terminal state).
Counting here, on the server, is the only place those facts are observable.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .batch_lines import Line

WEBHOOK_COUNTERS = ("events", "sent", "delivered", "retries", "failed", "dropped", "duplicates")

# Actions counted per object kind (all start at 0 so a test can assert "never cancelled").
KIND_ACTIONS: dict[str, tuple[str, ...]] = {
    "response": ("create", "retrieve", "cancel"),
    "conversation": ("create", "retrieve", "items_create", "items_list"),
    "thread": ("create", "retrieve", "messages_create", "messages_list"),
    "run": ("create", "retrieve", "cancel", "submit_tool_outputs"),
    "batch": ("create", "retrieve", "cancel"),
    "file": ("create", "retrieve", "content", "delete"),
}


@dataclass
class ObjectStats:
    """Per-object call counts and identity facts."""

    kind: str
    created_at: float
    metadata_run_id: str | None
    counts: Counter[str] = field(default_factory=Counter)


class Stats:
    """All counters of one simulator instance; cleared by ``/_sim/reset``."""

    def __init__(self, latency_window: int = 2000) -> None:
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter({"429": 0, "500": 0, "slow": 0, "trickle": 0})
        self.webhooks: Counter[str] = Counter({name: 0 for name in WEBHOOK_COUNTERS})
        self.creates_by_run_id: Counter[str] = Counter()
        # Tool outputs received per call id: above 1, a client answered the same call twice.
        self.tool_outputs_by_call_id: Counter[str] = Counter()
        # Batch lines accepted per custom_id, across batches: above 1, a request batched twice.
        self.batch_lines_by_custom_id: Counter[str] = Counter()
        self.objects: dict[str, ObjectStats] = {}
        self.latencies_ms: deque[float] = deque(maxlen=max(1, latency_window))

    def register(
        self,
        object_id: str,
        kind: str,
        created_at: float,
        metadata: dict[str, str] | None,
        *,
        counts_as_create: bool = False,
    ) -> None:
        """Start tracking a new object; response/run creates are also counted per run id."""
        run_id = (metadata or {}).get("run_id")
        entry = ObjectStats(kind=kind, created_at=created_at, metadata_run_id=run_id)
        entry.counts.update({action: 0 for action in KIND_ACTIONS.get(kind, ())})
        entry.counts["create"] += 1
        self.objects[object_id] = entry
        if counts_as_create and run_id is not None:
            self.creates_by_run_id[run_id] += 1

    def count_tool_outputs(self, call_ids: Iterable[str]) -> None:
        """Count one received output for each call id (a retried submit counts again)."""
        self.tool_outputs_by_call_id.update(call_ids)

    def count_batch_lines(self, lines: Iterable[Line]) -> None:
        """Count the lines of a batch that passed validation: each is a remote create (its
        body's ``metadata["run_id"]`` in ``creates_by_run_id``), and its custom_id is counted."""
        for line in lines:
            self.batch_lines_by_custom_id[line.custom_id] += 1
            run_id = line.record.metadata.get("run_id")
            if run_id is not None:
                self.creates_by_run_id[run_id] += 1

    def touch(self, object_id: str, action: str) -> None:
        """Count one ``action`` (retrieve, cancel...) on a known object."""
        entry = self.objects.get(object_id)
        if entry is not None:
            entry.counts[action] += 1

    def record_latency(self, seconds: float) -> None:
        """Remember how long the simulator itself took to handle a request."""
        self.latencies_ms.append(seconds * 1000.0)

    def latency(self) -> dict[str, Any]:
        """p50/p99 over the last N requests (nearest-rank)."""
        values = sorted(self.latencies_ms)
        if not values:
            return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

        def rank(p: float) -> float:
            index = min(len(values) - 1, max(0, int(round(p * len(values) + 0.5)) - 1))
            return round(values[index], 3)

        return {
            "count": len(values),
            "p50_ms": rank(0.50),
            "p99_ms": rank(0.99),
            "max_ms": round(values[-1], 3),
        }
