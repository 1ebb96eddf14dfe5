"""A status change reads the one row it changes, even when PostgreSQL's statistics are from
before a burst.

The case this project is for: a table of finished runs, then a thousand new ones at once, long
before autovacuum analyzes the table again. The statistics then call the new runs' status rare,
and with an index on status alone the planner judged it as good as the primary key for a
compare-and-set on both (``WHERE id = %s AND status = %s``): every start's status change read
every run still pending (migration 0009).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection

from runs.models import Run
from runs.status import ACTIVE, RunStatus

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("on_postgres")]

BURST = 400
TABLE = Run._meta.db_table


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an ``EXPLAIN (FORMAT JSON)`` plan that reads the runs table."""
    found = [node] if node.get("Relation Name") == TABLE and "Scan" in node["Node Type"] else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


def _rows_read(sql: str, params: list[Any]) -> int:
    """How many rows the statement's scans of the runs table read: those it kept and those a
    filter removed after reading them. Run, then rolled back with the test's transaction."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        raw = cursor.fetchone()[0]
    (plan,) = json.loads(raw) if isinstance(raw, str) else raw
    scans = _scans(plan["Plan"])
    assert scans, plan
    return sum(s["Actual Rows"] + s.get("Rows Removed by Filter", 0) for s in scans)


@pytest.fixture
def burst_after_analyze(run_row):
    """``BURST`` runs analyzed while all were completed, then all moved to ``status``: the
    statistics of a table just before a burst, read during it."""

    def make(status: str) -> list[int]:
        ids = [run_row(RunStatus.COMPLETED, remote_id=f"resp_{i}").pk for i in range(BURST)]
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {TABLE}")
        Run.objects.filter(pk__in=ids).update(status=status)
        return ids

    return make


def test_a_starts_status_change_reads_one_row_while_a_burst_waits(burst_after_analyze):
    """``states.transition``'s compare-and-set, as a start makes it (pending -> queued)."""
    ids = burst_after_analyze(RunStatus.PENDING)
    sql = f'UPDATE "{TABLE}" SET "status" = %s WHERE "id" = %s AND "status" = %s'
    assert _rows_read(sql, [RunStatus.QUEUED, ids[BURST // 2], RunStatus.PENDING]) == 1


def test_a_poll_ticket_claim_reads_one_row_while_a_burst_is_in_progress(burst_after_analyze):
    """``claims.claim_ticket``'s condition: the run, its ticket and any active status."""
    ids = burst_after_analyze(RunStatus.IN_PROGRESS)
    active = sorted(ACTIVE)
    sql = (
        f'UPDATE "{TABLE}" SET poll_generation = poll_generation + 1 WHERE id = %s'
        f" AND poll_generation = 0 AND status IN ({', '.join(['%s'] * len(active))})"
        " AND remote_id <> ''"
    )
    assert _rows_read(sql, [ids[BURST // 2], *active]) == 1
