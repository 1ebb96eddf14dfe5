"""The run list at 100,000 runs: no more queries than at 100, and no per-row query.

Timings are printed (run with ``-s`` to see them) and recorded in docs/operations.md; they are
not asserted, since a loaded CI machine must not fail a correctness suite.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from runs.models import Run, Thread
from runs.status import RunStatus

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:runs_run_changelist")
STATUSES = RunStatus.values
#: The list views an operator uses most: plain, filtered, searched, a later page.
VIEWS = {
    "all": {},
    "status filter": {"status__exact": "failed"},
    "two filters": {"status__exact": "completed", "backend__exact": "responses"},
    "search our id": {"q": "{id}"},
    "search remote id": {"q": "resp_77"},
    "search metadata": {"q": "customer=c-77"},
    "page 2": {"p": "2"},
}
#: Session, user, the page's rows, its count: whatever the table size.
MAX_QUERIES = 6


def add_runs(thread: Thread, count: int, start: int = 0) -> None:
    Run.objects.bulk_create(
        (
            Run(
                thread=thread,
                status=STATUSES[i % len(STATUSES)],
                model="gpt-4.1-mini",
                remote_id=f"resp_{i}",
                metadata={"customer": f"c-{i % 1000}"},
                api_calls=i % 9,
                polls=i % 7,
            )
            for i in range(start, start + count)
        ),
        batch_size=5_000,
    )


def measure(admin_client, params: dict[str, str]) -> tuple[int, float]:
    with CaptureQueriesContext(connection) as queries:
        began = time.perf_counter()
        response = admin_client.get(CHANGELIST, params)
        elapsed = time.perf_counter() - began
    assert response.status_code == 200
    return len(queries), elapsed


def test_the_run_list_costs_the_same_queries_at_100_and_100000_runs(
    admin_client, django_assert_max_num_queries
):
    thread = Thread.objects.create()
    add_runs(thread, 100)
    some_id = str(Run.objects.order_by("id").values_list("id", flat=True)[50])
    views = {name: {k: v.format(id=some_id) for k, v in p.items()} for name, p in VIEWS.items()}
    small = {name: measure(admin_client, params)[0] for name, params in views.items()}

    began = time.perf_counter()
    add_runs(thread, 99_900, start=100)
    seeded_s = time.perf_counter() - began
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum would have done by now
            cursor.execute("ANALYZE runs_run")
    large = {name: measure(admin_client, params) for name, params in views.items()}

    print(f"\n100,000 runs on {connection.vendor} (seeded in {seeded_s:.1f} s):")
    for name, (queries, elapsed) in large.items():
        print(f"  {name:17} {queries} queries  {elapsed * 1000:7.1f} ms")
    # Never more queries at 100,000 runs than at 100 (one fewer unfiltered on PostgreSQL: the
    # estimate replaces the count).
    assert all(large[name][0] <= small[name] for name in views), (small, large)
    for params in views.values():
        with django_assert_max_num_queries(MAX_QUERIES):
            admin_client.get(CHANGELIST, params)
    if connection.vendor == "postgresql":
        assert_unfiltered_list_is_estimated_not_counted(admin_client)


def assert_unfiltered_list_is_estimated_not_counted(admin_client) -> None:
    """PostgreSQL: the planner's estimate instead of a COUNT(*) over the whole table; a
    filtered list is still counted exactly (through an index)."""
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CHANGELIST)
    sql = [q["sql"] for q in queries.captured_queries]
    assert any("reltuples" in s for s in sql)
    assert not any("COUNT(*)" in s for s in sql)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CHANGELIST, {"status__exact": "failed"})
    assert any("COUNT(*)" in q["sql"] for q in queries.captured_queries)
