"""Event-driven webhook delivery for terminal background responses and batches.

Why event-driven: a response's or batch's terminal time is known when it is created (or
cancelled),
so one asyncio timer per event is armed then; nothing ever scans the object store. At the
terminal time the event is built with the config in force at that moment (URL, secret,
drop/duplicate/reorder rates), and each delivery attempt is another timer, with
exponential back-off on non-2xx answers or connection errors, as the real API retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2

from .batch_service import settle
from .batches import TERMINAL_BATCH, BatchRecord
from .ids import hex_id
from .responses import ResponseRecord
from .signing import sign
from .state import SimState
from .timeline import TERMINAL_RESPONSE

log = logging.getLogger("runs_simulator.webhooks")


@dataclass(frozen=True)
class Delivery:
    """One event to deliver: same ``webhook-id`` across retries and duplicates."""

    msg_id: str
    body: bytes
    url: str
    secret: str
    generation: int


class WebhookDispatcher:
    """Arms timers for response events and delivers them with retries."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.generation = 0
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx2.AsyncClient | None = None

    def _call_at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` at epoch time ``when`` on the running loop."""
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.time())
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            callback(*args)

        handle = loop.call_at(loop.time() + delay, run)
        self._timers.add(handle)

    def schedule_response(self, record: ResponseRecord) -> None:
        """Arm the timer for ``record``'s terminal event (re-armed after a cancel)."""
        terminal = (
            record.cancelled_at if record.cancelled_at is not None else record.timeline.terminal_at
        )
        self._call_at(terminal, self._on_terminal, record.id, record.webhook_token, self.generation)

    def schedule_batch(self, batch: BatchRecord) -> None:
        """Arm the timer for ``batch``'s terminal event (re-armed after a cancel)."""
        self._call_at(
            batch.terminal_at(), self._on_batch_end, batch.id, batch.webhook_token, self.generation
        )

    def _on_terminal(self, response_id: str, token: int, generation: int) -> None:
        if generation != self.generation:
            return
        record = self.state.stores.responses.get(response_id)
        if record is None or record.webhook_token != token:
            return
        now = self.state.now()
        status = record.status(now)
        terminal_at = record.terminal_at(now)
        if status not in TERMINAL_RESPONSE or terminal_at is None:
            return
        self._emit(f"response.{status}", record.id, terminal_at)

    def _on_batch_end(self, batch_id: str, token: int, generation: int) -> None:
        if generation != self.generation:
            return
        batch = self.state.stores.batches.get(batch_id)
        if batch is None or batch.webhook_token != token:
            return
        now = self.state.now()
        settle(self.state, batch, now)  # the files exist before the event announces the end
        status = batch.status(now)
        if status not in TERMINAL_BATCH:
            return
        self._emit(f"batch.{status}", batch.id, batch.terminal_at())

    def _emit(self, event_type: str, object_id: str, terminal_at: float) -> None:
        """Build one event and arm its deliveries (with the drop/duplicate/reorder faults)."""
        targets = self._targets(event_type)
        if not targets:
            return
        config = self.state.config
        now = self.state.now()
        rng = self.state.webhook_rng
        counters = self.state.stats.webhooks
        event = {
            "id": hex_id(rng, "evt"),
            "object": "event",
            "type": event_type,
            "created_at": int(terminal_at),
            "data": {"id": object_id},
        }
        counters["events"] += 1
        if config.webhook_drop_rate > 0 and rng.random() < config.webhook_drop_rate:
            counters["dropped"] += 1
            return
        body = json.dumps(event, separators=(",", ":")).encode()
        for url, secret in targets:  # one delivery (own webhook-id) per destination
            delivery = Delivery(hex_id(rng, "wh", 16), body, url, secret, self.generation)
            jitter = rng.uniform(0.0, config.webhook_reorder) if config.webhook_reorder > 0 else 0.0
            first = now + config.webhook_delay_s + jitter
            self._call_at(first, self._start_attempt, delivery, 1)
            if config.webhook_duplicate_rate > 0 and rng.random() < config.webhook_duplicate_rate:
                counters["duplicates"] += 1
                later = first + 0.01 + rng.uniform(0.0, 0.05)
                self._call_at(later, self._start_attempt, delivery, 1)

    def _targets(self, event_type: str) -> list[tuple[str, str]]:
        """(url, secret) of each destination of ``event_type``: the ``/_sim/config`` target,
        then every registered endpoint subscribed to it (with its current secret)."""
        config = self.state.config
        targets: list[tuple[str, str]] = []
        if config.webhook_url and config.webhook_secret:
            targets.append((config.webhook_url, config.webhook_secret))
        for endpoint in self.state.stores.webhook_endpoints.values():
            if event_type in endpoint.event_types:
                targets.append((endpoint.url, endpoint.secret))
        return targets

    async def send_now(self, url: str, secret: str, body: bytes) -> int:
        """POST one signed delivery at once and return the status code (``webhooks.test``).

        Not retried and not counted in the webhook stats: it is a probe the caller waits for.
        Transport errors propagate to the caller.
        """
        headers = sign(body, secret, "wh_" + secrets.token_hex(16), int(time.time()))
        headers["content-type"] = "application/json"
        headers["user-agent"] = "OpenAI/1.0 (simulator)"
        if self._client is None:
            self._client = httpx2.AsyncClient()
        timeout = self.state.config.webhook_timeout_s
        answer = await self._client.post(url, content=body, headers=headers, timeout=timeout)
        return answer.status_code

    def _start_attempt(self, delivery: Delivery, attempt: int) -> None:
        if delivery.generation != self.generation:
            return
        task = asyncio.get_running_loop().create_task(self._attempt(delivery, attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, delivery: Delivery, attempt: int) -> None:
        counters = self.state.stats.webhooks
        config = self.state.config
        counters["sent"] += 1
        if attempt > 1:
            counters["retries"] += 1
        headers = sign(delivery.body, delivery.secret, delivery.msg_id, int(time.time()))
        headers["content-type"] = "application/json"
        headers["user-agent"] = "OpenAI/1.0 (simulator)"
        ok = False
        try:
            if self._client is None:
                self._client = httpx2.AsyncClient()
            answer = await self._client.post(
                delivery.url,
                content=delivery.body,
                headers=headers,
                timeout=config.webhook_timeout_s,
            )
            ok = 200 <= answer.status_code < 300
        except Exception as exc:  # any transport failure is a failed attempt
            log.debug("webhook attempt %s to %s failed: %s", attempt, delivery.url, exc)
        if delivery.generation != self.generation:
            return
        if ok:
            counters["delivered"] += 1
        elif attempt < config.webhook_max_attempts:
            backoff = config.webhook_retry_base_s * config.webhook_retry_factor ** (attempt - 1)
            self._call_at(time.time() + backoff, self._start_attempt, delivery, attempt + 1)
        else:
            counters["failed"] += 1

    def reset(self) -> None:
        """Forget every armed timer; in-flight attempts finish but do not retry or count."""
        self.generation += 1
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def pending(self) -> int:
        """Number of armed timers (exposed in stats to show there is no polling loop)."""
        return len(self._timers)

    async def aclose(self) -> None:
        """Close the HTTP client on shutdown."""
        self.reset()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
