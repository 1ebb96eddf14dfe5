"""Prometheus metrics: what the runs app counts, and the ``/metrics`` view that shows it.

Where each number comes from, chosen on purpose (docs/operations.md has the long version):

- **Runs by status** and **webhook events by outcome** are read from the database at scrape time
  (``DatabaseCollector``). They are then right whichever process answers the scrape and whoever
  did the work, and survive restarts. So are **cost totals by model and mode** (``Run.cost``,
  issue 16; no per-customer label: a label per metadata value would be a series per customer,
  the API and the admin total those). All are one query (three ``GROUP BY`` joined by
  ``UNION ALL``), made at most once per ``RUNS_METRICS_CACHE_S`` per process: several scrapers
  (an HA pair of Prometheus servers, a curious operator) then cost no more than one. Only the
  web ``/metrics`` exports them, so a ``sum()`` over all targets never counts them twice.
- **API calls by kind**, **poll lateness**, **status changes** and **token-bucket waits** happen
  in Celery workers. They are ordinary in-process metrics, exported by the process that counts
  them: the worker serves its own on ``RUNS_WORKER_METRICS_PORT`` (see ``on_worker_ready``)
  and Prometheus scrapes every worker and web process and sums. That is the Prometheus model and
  needs no shared state between hosts.
- Several processes of one kind on one host (uvicorn ``--workers``, a prefork pool) share
  ``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's multiprocess mode; each exporter then reads
  the whole directory.

In the tests the worker is a thread of the test process, so one ``/metrics`` shows everything.
Who may read ``/metrics`` at all is ``metrics_access``'s job (default: loopback only).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import DatabaseError
from django.db.models import Count, DecimalField, F, Sum, Value
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from .conf import settings
from .metrics_access import may_scrape
from .models import Run, WebhookEvent
from .status import RunStatus

log = logging.getLogger(__name__)

#: Every call we make to OpenAI, by what it was for (``create``, ``retrieve``, ``cancel``,
#: ``submit_tool_outputs``). ``Run.api_calls`` counts the same per run.
API_CALLS = Counter("runs_api_calls", "OpenAI API calls made, by kind.", ["kind"])

#: How late a poll tick ran compared with the time it was armed for (``Run.next_poll_at``):
#: the worker's queueing delay. The design aims at p99 <= 1 s with 10,000 concurrent runs.
POLL_LATENESS = Histogram(
    "runs_poll_lateness_seconds",
    "Delay between a poll's scheduled time and the moment it ran.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

#: Status changes committed by this process, by new status and by who made them.
STATUS_CHANGES = Counter(
    "runs_status_changes", "Run status changes, by new status and source.", ["to_status", "source"]
)

#: The API budget (a Redis token bucket, ``RUNS_MAX_RPS``): how long a call was deferred for
#: want of a token, and how many calls were deferred at all.
TOKEN_BUCKET_WAIT = Histogram(
    "runs_token_bucket_wait_seconds",
    "Time an API call was deferred waiting for the request budget, by kind (create, poll).",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
TOKEN_BUCKET_DEFERRED = Counter(
    "runs_token_bucket_deferred",
    "API calls deferred because the request budget was spent, by kind (create, poll).",
    ["kind"],
)
HANDED_TO_BATCHES = Counter(
    "runs_handed_to_batches",
    'Runs whose polls RUNS_POLL_MODE = "auto" left to runs.poll_due, by what ran late (start, '
    "poll): a rising rate says the workers are behind their countdowns.",
    ["after"],
)


def count_api_call(kind: str, calls: int = 1) -> None:
    API_CALLS.labels(kind=kind).inc(calls)


def count_handed_to_batches(after: str) -> None:
    HANDED_TO_BATCHES.labels(after=after).inc()


def observe_poll_lateness(scheduled_at: datetime | None) -> None:
    """Record how late a poll runs; a poll with no schedule (the first after a wake) counts 0."""
    if scheduled_at is None:
        return
    POLL_LATENESS.observe(max(0.0, (timezone.now() - scheduled_at).total_seconds()))


def observe_budget_wait(kind: str, seconds: float) -> None:
    """From the token bucket: a ``kind`` call must wait ``seconds`` for a token (0: it need not)."""
    if seconds > 0:
        TOKEN_BUCKET_DEFERRED.labels(kind=kind).inc()
        TOKEN_BUCKET_WAIT.labels(kind=kind).observe(seconds)


def on_status_changed(sender: Any, *, to_status: str, source: str, **kwargs: Any) -> None:
    """``run_status_changed`` receiver (connected in ``apps.py``)."""
    STATUS_CHANGES.labels(to_status=to_status, source=source).inc()


class DatabaseCollector:
    """Runs by status, webhook events by outcome and cost by model and mode, at scrape time."""

    def collect(self) -> Iterator[Metric]:
        try:
            runs, webhooks, costs = _COUNTS.get(settings.RUNS_METRICS_CACHE_S)
        except DatabaseError as exc:
            # The process metrics are still worth a scrape; the gap in these shows the outage.
            log.warning("metrics: cannot count runs in the database: %s", exc)
            return
        by_status = GaugeMetricFamily(
            "runs_in_status", "Runs by current status (from the database).", labels=["status"]
        )
        for status in RunStatus.values:
            by_status.add_metric([status], runs.get(status, 0))
        yield by_status
        by_outcome = GaugeMetricFamily(
            "runs_webhook_events",
            "Webhook deliveries stored, by outcome (from the database).",
            labels=["outcome"],
        )
        for outcome in WebhookEvent.Outcome.values:
            by_outcome.add_metric([outcome], webhooks.get(outcome, 0))
        yield by_outcome
        yield from _cost_families(costs)


def _cost_families(costs: dict[tuple[str, str], tuple[int, Decimal]]) -> Iterator[Metric]:
    usd = GaugeMetricFamily(
        "runs_cost_usd_total",
        "USD of runs with a cost, by model and mode (from the database; runs/pricing.py).",
        labels=["model", "mode"],
    )
    priced = GaugeMetricFamily(
        "runs_with_cost",
        "Runs with a cost, by model and mode (from the database).",
        labels=["model", "mode"],
    )
    for (model, mode), (n, total) in sorted(costs.items()):
        usd.add_metric([model, mode], float(total))
        priced.add_metric([model, mode], n)
    yield usd
    yield priced


Counts = tuple[dict[str, int], dict[str, int], dict[tuple[str, str], tuple[int, Decimal]]]


def count_in_database() -> Counts:
    """Runs by status, webhook events by outcome, cost by model and mode: one round trip."""
    no_cost = Value(Decimal(0), output_field=DecimalField(max_digits=20, decimal_places=8))

    def grouped(rows: Any, kind: str, key: Any, key2: Any, usd: Any) -> Any:
        rows = rows.order_by().annotate(kind=Value(kind), key=key, key2=key2)
        return rows.values_list("kind", "key", "key2").annotate(n=Count("id"), usd=usd)

    runs: dict[str, int] = {}
    webhooks: dict[str, int] = {}
    costs: dict[tuple[str, str], tuple[int, Decimal]] = {}
    union = grouped(Run.objects, "run", F("status"), Value(""), no_cost).union(
        grouped(WebhookEvent.objects, "webhook", F("outcome"), Value(""), no_cost),
        grouped(Run.objects.filter(cost__isnull=False), "cost", F("model"), F("mode"), Sum("cost")),
        all=True,
    )
    for kind, key, key2, n, usd in union:
        if kind == "cost":
            costs[(key, key2)] = (n, Decimal(usd or 0))
        else:
            (runs if kind == "run" else webhooks)[key] = n
    return runs, webhooks, costs


class _CachedCounts:
    """The last counts of this process, reused while younger than the allowed age.

    A lock, not just a timestamp: two scrapes arriving together (uvicorn threads, an HA pair)
    must not both run the query when the cache has just expired.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counted_at = float("-inf")
        self._counts: Counts = ({}, {}, {})

    def get(self, max_age_s: float) -> Counts:
        with self._lock:
            if time.monotonic() - self._counted_at >= max_age_s:
                self._counts = count_in_database()  # a DatabaseError keeps the old time
                self._counted_at = time.monotonic()
            return self._counts

    def forget(self) -> None:
        """Count again at the next scrape (tests; after a bulk change an operator wants seen)."""
        with self._lock:
            self._counted_at = float("-inf")


_COUNTS = _CachedCounts()


class _Union:
    """Several collectors (or registries) as one, for ``generate_latest``."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def collect(self) -> Iterable[Metric]:
        for part in self.parts:
            yield from part.collect()


def process_registry() -> Any:
    """This process's metrics, or all processes' of this host in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: django-prometheus's request metrics, ours, and the database counts.

    Only for an allowed scraper (``metrics_access``); anyone else gets a 403 and costs nothing.
    """
    if not may_scrape(request):
        return HttpResponseForbidden(
            "metrics: not allowed from here (RUNS_METRICS_TOKEN, RUNS_METRICS_ALLOWED_IPS)\n",
            content_type="text/plain",
        )
    body = generate_latest(_Union(process_registry(), DatabaseCollector()))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    """Celery ``worker_ready`` receiver: serve this worker's metrics when a port is configured.

    Off by default (``RUNS_WORKER_METRICS_PORT=0``) because two workers on one host would fight
    over one port; compose and ``make worker`` set it. It listens on ``RUNS_WORKER_METRICS_ADDR``
    (default loopback: prometheus_client's exporter has no authentication, so only compose,
    whose network is private, widens it to 0.0.0.0).
    """
    port = settings.RUNS_WORKER_METRICS_PORT
    if port:
        address = settings.RUNS_WORKER_METRICS_ADDR
        start_http_server(port, addr=address, registry=process_registry())
        log.info("worker metrics on %s:%s/metrics", address, port)
