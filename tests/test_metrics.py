"""Prometheus metrics at ``/metrics``: what each number counts, and where it is exported.

Who may read them (a token, or loopback by default) is in tests/test_metrics_access.py.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from project.localredis import free_port
from runs import budget, metrics
from runs.models import WebhookEvent
from runs.states import transition
from runs.tasks import start_run


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from Prometheus text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(autouse=True)
def fresh_counts():
    """Each test sees the database as it left it, not a count cached by an earlier test."""
    metrics._COUNTS.forget()
    yield
    metrics._COUNTS.forget()


@pytest.mark.django_db
def test_runs_by_status_and_webhook_events_by_outcome_come_from_the_database(client, make_run):
    make_run("completed"), make_run("completed"), make_run("queued")
    WebhookEvent.objects.create(webhook_id="wh_1", type="response.completed", outcome="applied")
    response = client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain")
    samples = scrape(response.content.decode())
    assert value(samples, "runs_in_status", status="completed") == 2
    assert value(samples, "runs_in_status", status="queued") == 1
    assert value(samples, "runs_in_status", status="failed") == 0  # every status, even at 0
    assert value(samples, "runs_webhook_events", outcome="applied") == 1


@pytest.mark.django_db
def test_a_scrape_counts_in_one_query_and_the_next_ones_reuse_it(client, make_run, settings):
    """Two GROUP BYs in one round trip, at most once per RUNS_METRICS_CACHE_S per process: a
    second scraper (an HA pair of Prometheus servers) costs no query. Before: 2 per scrape."""
    settings.RUNS_METRICS_CACHE_S = 60.0
    make_run("queued")
    with CaptureQueriesContext(connection) as first:
        client.get("/metrics")
    make_run("queued")  # within the window this one is not seen yet: the price of the cache
    with CaptureQueriesContext(connection) as second:
        samples = scrape(client.get("/metrics").content.decode())
    assert len(first.captured_queries) == 1
    assert "UNION ALL" in first.captured_queries[0]["sql"]
    assert len(second.captured_queries) == 0
    assert value(samples, "runs_in_status", status="queued") == 1

    settings.RUNS_METRICS_CACHE_S = 0.0  # no cache: every scrape counts
    with CaptureQueriesContext(connection) as third:
        samples = scrape(client.get("/metrics").content.decode())
    assert len(third.captured_queries) == 1
    assert value(samples, "runs_in_status", status="queued") == 2


@pytest.mark.django_db
def test_django_prometheus_request_metrics_are_there_too(client):
    client.get("/metrics")
    text = client.get("/metrics").content.decode()
    assert "django_http_requests_total_by_view_transport_method_total" in text


@pytest.mark.django_db(transaction=True)  # the counter moves on commit, like the signal
def test_status_changes_are_counted_by_status_and_source(make_run, client):
    labels = {"to_status": "cancelling", "source": "user"}
    before = value(
        scrape(client.get("/metrics").content.decode()), "runs_status_changes_total", **labels
    )
    run = make_run("queued")
    transition(run.pk, "cancelling", source="user")
    after = value(
        scrape(client.get("/metrics").content.decode()), "runs_status_changes_total", **labels
    )
    assert after == before + 1


@pytest.mark.integration
def test_a_run_counts_its_api_calls_by_kind_and_its_poll_lateness(
    worker, simulator, wait_terminal, make_run, client
):
    before = scrape(client.get("/metrics").content.decode())
    run = make_run("pending", metadata={"sim_duration_s": "1.5", "sim_outcome": "completed"})
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    # The signal is sent just *after* the worker's commit that the wait above sees.
    labels = {"to_status": "completed", "source": "poll"}
    deadline = time.monotonic() + 5
    while True:
        after = scrape(client.get("/metrics").content.decode())
        changes = value(after, "runs_status_changes_total", **labels)
        if changes > value(before, "runs_status_changes_total", **labels):
            break
        assert time.monotonic() < deadline, "the completed status change was never counted"
        time.sleep(0.05)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("runs_api_calls_total", kind="create") == 2  # conversation + response
    assert delta("runs_api_calls_total", kind="retrieve") == run.polls
    assert delta("runs_poll_lateness_seconds_count") == run.polls
    assert delta("runs_status_changes_total", to_status="completed", source="poll") == 1


def test_token_bucket_waits_are_recorded(token_bucket, budget_clock):
    token_bucket.RUNS_MAX_RPS = 2.0  # a burst of 2, then a wait of half a second

    def recorded() -> tuple[float, float]:
        labels = {"kind": "create"}
        return (
            REGISTRY.get_sample_value("runs_token_bucket_deferred_total", labels) or 0.0,
            REGISTRY.get_sample_value("runs_token_bucket_wait_seconds_sum", labels) or 0.0,
        )

    deferred_before, waited_before = recorded()
    assert [budget.take("create") for _ in range(3)] == [0, 0, 0.5]
    deferred_after, waited_after = recorded()
    assert deferred_after == deferred_before + 1  # only the deferred call counts
    assert waited_after == pytest.approx(waited_before + 0.5)


def test_a_worker_serves_its_own_metrics_without_the_database_counts(settings):
    """The worker's exporter: its in-process counters, never the database gauges (which the web
    ``/metrics`` already exports: a ``sum()`` over targets must not count them twice)."""
    port = free_port()
    settings.RUNS_WORKER_METRICS_PORT = port
    metrics.on_worker_ready()  # on loopback: the exporter has no authentication
    metrics.count_api_call("retrieve", 0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert "runs_api_calls_total" in text
    assert "runs_poll_lateness_seconds_bucket" in text
    assert "runs_in_status" not in text


def test_no_port_no_exporter(settings, monkeypatch):
    served: list[tuple[int, str]] = []
    monkeypatch.setattr(
        metrics, "start_http_server", lambda port, addr, **kw: served.append((port, addr))
    )
    settings.RUNS_WORKER_METRICS_PORT = 0
    metrics.on_worker_ready()
    assert served == []  # no port was bound
    settings.RUNS_WORKER_METRICS_PORT = 9
    metrics.on_worker_ready()
    assert served == [(9, "127.0.0.1")]  # with a port set, it serves there, on loopback
    settings.RUNS_WORKER_METRICS_ADDR = "0.0.0.0"  # compose: a private network
    metrics.on_worker_ready()
    assert served[-1] == (9, "0.0.0.0")
