"""The simulator's whole in-memory world, owned by the ASGI app.

Why one object: reset must clear everything at once (objects, counters, RNG streams,
pending webhook timers), and every handler needs the same config, clock and stores.
Stores are plain dicts keyed by id, so every request is O(1) in the number of objects.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import SimConfig
from .stats import Stats

if TYPE_CHECKING:
    from .assistants import MessageRecord, RunRecord, ThreadRecord
    from .batches import BatchRecord
    from .conversations import Conversation
    from .files import FileRecord
    from .responses import ResponseRecord
    from .tool_scenario import ToolPlan
    from .webhook_endpoints import WebhookEndpoint
    from .webhooks import WebhookDispatcher


@dataclass
class ToolChain:
    """Tool rounds answered so far by a chain of Responses (or one Assistants run)."""

    id: str
    plan: ToolPlan
    inherited: dict[str, str]
    answered: int = 0


@dataclass
class Stores:
    """All objects, by id."""

    responses: dict[str, ResponseRecord] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    chains: dict[str, ToolChain] = field(default_factory=dict)
    threads: dict[str, ThreadRecord] = field(default_factory=dict)
    messages: dict[str, MessageRecord] = field(default_factory=dict)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    webhook_endpoints: dict[str, WebhookEndpoint] = field(default_factory=dict)
    files: dict[str, FileRecord] = field(default_factory=dict)
    batches: dict[str, BatchRecord] = field(default_factory=dict)


class SimState:
    """Config, clock, RNG streams, counters and stores of one simulator process."""

    def __init__(self, config: SimConfig, seed: int | None = None) -> None:
        self.startup_config = config.copy()
        self.config = config
        self.seed = seed
        self.webhooks: WebhookDispatcher | None = None
        self._fresh()

    def _fresh(self) -> None:
        base = self.seed if self.seed is not None else random.SystemRandom().randrange(2**63)
        # Separate streams so that, e.g., enabling faults does not change object ids.
        self.rng = random.Random(f"{base}:objects")
        self.fault_rng = random.Random(f"{base}:faults")
        self.webhook_rng = random.Random(f"{base}:webhooks")
        self.stats = Stats(self.config.latency_window)
        self.stores = Stores()

    @staticmethod
    def now() -> float:
        """Wall-clock epoch seconds (the API's timestamps are epoch-based)."""
        return time.time()

    def reset(self, keep_config: bool = False) -> None:
        """Drop every object, counter and pending webhook; restore startup config unless told."""
        if not keep_config:
            self.config = self.startup_config.copy()
        self._fresh()
        if self.webhooks is not None:
            self.webhooks.reset()

    def update_config(self, changes: dict[str, Any]) -> None:
        """Apply runtime config changes (validated) and resize what depends on them."""
        self.config.update(changes)
        if "latency_window" in changes:
            window = max(1, self.config.latency_window)
            self.stats.latencies_ms = deque(self.stats.latencies_ms, maxlen=window)
