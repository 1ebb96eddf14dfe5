"""What one start costs the database: the statements of ``lifecycle.start`` for one run by
webhook, one run per task, against the simulator over HTTP through the real SDK.

The list is the documentation (docs/architecture.md, "What a start costs"): a change that adds a
statement to every start shows up here, where it must be argued for.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.engine import lifecycle
from runs.models import Message, Run
from runs.services import create_run
from runs.status import RunStatus

pytestmark = pytest.mark.django_db


def _shape(sql: str) -> str:
    """``UPDATE runs_run``, ``SELECT runs_message``...: the statement's verb and first table."""
    verb = sql.split(None, 1)[0].upper()
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql, re.IGNORECASE)
    return f"{verb} {table.group(1) if table else ''}".strip()


def test_a_start_by_webhook_makes_these_statements_and_no_others(sdk_on_simulator, sent_tasks):
    run = create_run("hello", strategy="webhook")

    with CaptureQueriesContext(connection) as queries:
        result = lifecycle.start(run.pk)

    assert result["started"] is True
    statements = [
        _shape(q["sql"])
        for q in queries
        if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))
    ]
    assert statements == [
        "UPDATE runs_run",  # the claim, which reads the row (claims.claim_start)
        "UPDATE runs_thread",  # the new conversation's id (Thread.objects.keep_remote_id)
        "SELECT runs_message",  # the unsent messages (lifecycle.unsent_messages)
        "UPDATE runs_message",  # stamped sent (Message.objects.mark_sent)
        "UPDATE runs_run",  # the state machine's move, with the first due time and counters
        "INSERT runs_runevent",  # its log row
        "SELECT runs_webhookevent",  # did a webhook beat the remote id? (events.apply_waiting)
    ]
    # The move's counters are added to the row's own, never read and rewritten: written out.
    move = [q["sql"] for q in queries if _shape(q["sql"]) == "UPDATE runs_run"][1]
    assert '"api_calls" = "api_calls" + ' in move
    # No task: the safety-net poll is a due time runs.poll_due finds (RUNS_SAFETY_NET_MODE).
    assert sent_tasks == []
    run.refresh_from_db()
    assert run.next_poll_at is not None
    assert run.status == RunStatus.QUEUED and run.remote_id
    assert not Message.objects.unsent_of([run.thread_id]).exists()
    assert Run.objects.filter(pk=run.pk, thread__remote_id__startswith="conv").exists()


def test_with_a_per_run_safety_net_a_start_by_webhook_also_publishes_its_poll(
    sdk_on_simulator, sent_tasks, settings
):
    settings.RUNS_SAFETY_NET_MODE = "per_run"
    run = create_run("hello", strategy="webhook")

    assert lifecycle.start(run.pk)["started"] is True

    # The safety-net poll, a countdown task the worker that receives it holds until it is due.
    assert [(name, args) for name, args, _ in sent_tasks] == [("runs.poll_run", (run.pk, 0))]
