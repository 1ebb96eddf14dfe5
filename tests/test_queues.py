"""Wakes first: each kind of work goes to its own queue, as ``RUNS_QUEUES`` says.

The engine picks the queue when it sends (``runs/engine/enqueue.py``), because a wake and a
scheduled poll are the same task name and ``task_routes`` could not tell them apart. These tests
publish through the real Redis broker to a private deployment's queues with no worker on them,
and read the messages back where they landed; the last one runs real workers and shows what the
split is for: a wake is served while a backlog of starts still waits.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from runs.engine import enqueue, writer
from runs.engine.decisions import Decision
from runs.models import Run
from runs.services import create_run, poll_now
from runs.services import start as start_run
from runs.tasks import start_run as start_run_task
from runs_dev import processes

from .through_broker import wait_for

pytestmark = pytest.mark.integration


class Deployment:
    """A private deployment on the test Redis: its default queue and one queue per kind."""

    def __init__(self, url: str, default: str) -> None:
        self.redis = redis.Redis.from_url(url)
        self.default = default
        self.queues = processes.private_queues(default)

    def landed(self) -> dict[str, list[tuple[str, list[Any]]]]:
        """Every queue of the deployment -> the (task name, args) of the messages in it."""
        found = {}
        for name in (self.default, *self.queues.values()):
            messages = [json.loads(raw) for raw in reversed(self.redis.lrange(name, 0, -1))]
            found[name] = [
                (m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages
            ]
        return found

    def only(self, queue: str) -> list[tuple[str, list[Any]]]:
        """The messages in ``queue``, after checking that no other queue got any."""
        landed = self.landed()
        others = {name: msgs for name, msgs in landed.items() if name != queue and msgs}
        assert others == {}, f"messages outside {queue}"
        return landed[queue]


@pytest.fixture
def deployment(redis_url: str, simulator) -> Iterator[Deployment]:
    """This process sends to a private deployment on the test Redis, where nothing consumes."""
    default = f"runs-q-{uuid.uuid4().hex[:8]}"
    with processes.pointed_at(
        broker_url=redis_url, queue=default, openai_base_url=simulator.base_url
    ):
        yield Deployment(redis_url, default)


@pytest.fixture
def active_run(run_row) -> Run:
    return run_row("in_progress", remote_id="resp_q", poll_generation=3)


def test_a_wake_lands_on_the_wakes_queue(deployment, active_run):
    assert writer.wake(active_run.pk)

    assert deployment.only(deployment.queues["wake"]) == [("runs.poll_run", [active_run.pk, 4])]


def test_a_scheduled_poll_of_the_same_task_lands_on_the_polls_queue(deployment, active_run):
    writer.apply(Decision(active_run.pk, "in_progress", ticket=3, poll_in_s=30.0))

    assert deployment.only(deployment.queues["poll"]) == [("runs.poll_run", [active_run.pk, 3])]


def test_a_start_lands_on_the_starts_queue(deployment, db, django_capture_on_commit_callbacks):
    run = create_run("hello")
    with django_capture_on_commit_callbacks(execute=True):
        start_run(run)

    assert deployment.only(deployment.queues["start"]) == [("runs.start_run", [run.pk])]


def test_a_views_own_start_run_delay_lands_on_the_starts_queue_too(deployment, db):
    """What a host's view writes (``start_run.delay(run_id)``) is routed like the engine's send."""
    run = create_run("hello")
    start_run_task.delay(run.pk)

    assert deployment.only(deployment.queues["start"]) == [("runs.start_run", [run.pk])]


@pytest.mark.parametrize(("keep", "ignored"), [(True, False), (False, True)])
def test_a_start_keeps_its_result_row_unless_told_not_to(deployment, db, settings, keep, ignored):
    """``RUNS_KEEP_START_RESULTS = False`` travels in the message, so the worker writes no row
    whoever sent it (a view's ``delay`` or the engine's retry)."""
    settings.RUNS_KEEP_START_RESULTS = keep
    run = create_run("hello")
    start_run_task.delay(run.pk)
    enqueue.send(enqueue.START_RUN, run.pk, countdown=5)

    raw = deployment.redis.lrange(deployment.queues["start"], 0, -1)
    assert [json.loads(m)["headers"]["ignore_result"] for m in raw] == [ignored, ignored]


def test_queues_are_listed_by_urgency_but_taken_in_turn():
    """A fixed order (kombu's "priority") starved starts behind polls; the rotation cannot."""
    from django.conf import settings as project

    names = list(project.CELERY_TASK_QUEUES)
    assert names == ["runs.wakes", project.CELERY_TASK_DEFAULT_QUEUE, "runs.polls", "runs.tools",
                     "runs.starts"]  # fmt: skip
    assert project.CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] == "round_robin"


@pytest.mark.parametrize(
    ("task", "args", "kind"),
    [
        (enqueue.CANCEL_RUN, (7,), "wake"),  # a person asked: as prompt as a wake
        (enqueue.EXECUTE_TOOL_CALLS, (7, 1), "tool"),  # user code, maybe slow
        (enqueue.RESUME_TOOL_ROUND, (7,), "tool"),  # the same round's submit
    ],
)
def test_the_other_tasks_go_with_their_kind(deployment, task, args, kind):
    enqueue.send(task, *args)

    assert deployment.only(deployment.queues[kind]) == [(task, list(args))]


def test_several_tasks_sent_at_once_land_each_on_its_queue_in_order(deployment):
    """``send_all`` (a chunk of starts arming their polls) goes through one producer and, on
    Redis, one pipeline; what lands is what one ``send`` at a time would have sent."""
    enqueue.send_all(
        [
            (enqueue.POLL_RUN, (1, 1), 30.0),
            (enqueue.POLL_RUN, (2, 1), 30.0),
            (enqueue.START_RUN, (3,), None),
        ]
    )

    landed = deployment.landed()
    assert landed[deployment.queues["poll"]] == [
        ("runs.poll_run", [1, 1]),
        ("runs.poll_run", [2, 1]),
    ]
    assert landed[deployment.queues["start"]] == [("runs.start_run", [3])]
    raw = deployment.redis.lrange(deployment.queues["poll"], 0, -1)
    assert all(json.loads(m)["headers"]["eta"] for m in raw)  # the countdown travelled


def test_without_runs_queues_everything_stays_on_the_default_queue(
    deployment, active_run, settings
):
    """A host whose workers consume only the default queue keeps working: nothing moves."""
    settings.RUNS_QUEUES = {"start": None, "poll": None, "wake": None, "tool": None}
    writer.wake(active_run.pk)
    enqueue.send(enqueue.START_RUN, 8)
    enqueue.send(enqueue.EXECUTE_TOOL_CALLS, 8, 1)

    assert deployment.only(deployment.default) == [
        ("runs.poll_run", [active_run.pk, 4]),
        ("runs.start_run", [8]),
        ("runs.execute_tool_calls", [8, 1]),
    ]


def test_a_host_may_move_only_the_wakes(deployment, active_run, settings):
    settings.RUNS_QUEUES = {"wake": "urgent-" + deployment.default}
    writer.wake(active_run.pk)
    enqueue.send(enqueue.START_RUN, 8)

    landed = deployment.landed()
    assert landed[deployment.default] == [("runs.start_run", [8])]
    urgent = deployment.redis.lrange("urgent-" + deployment.default, 0, -1)
    assert [json.loads(m)["headers"]["task"] for m in urgent] == ["runs.poll_run"]
    deployment.redis.delete("urgent-" + deployment.default)


def test_a_misspelt_kind_is_reported_by_manage_py_check(settings):
    from runs.checks import check_queues

    settings.RUNS_QUEUES = {"wakes": "runs.wakes", "start": ""}

    (error,) = check_queues()
    assert error.id == "runs.E301"
    assert "'wakes'" in error.msg and "'start'" in error.msg


# --- what it is for ------------------------------------------------------------------------------


def test_a_wake_is_served_while_a_backlog_of_starts_still_waits(
    redis_url, simulator, transactional_db, tmp_path
):
    """One worker (2 threads) on starts, polls and tools, a small one on wakes; 40 starts of
    about 0.4 s each queue up, then a run is woken: its poll runs within a couple of seconds,
    with most starts still waiting (on one shared queue it would run after all of them)."""
    queue = f"runs-wake-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": processes.database_url(),
        "CELERY_BROKER_URL": redis_url,
        "REDIS_URL": redis_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "OPENAI_BASE_URL": simulator.base_url,
        "OPENAI_API_KEY": "sk-local-simulator",
        "RUNS_POLL_AUTO_LATE_S": "3600",  # no beat here: no run may go to runs.poll_due
        "RUNS_LOG_LEVEL": "ERROR",
    }
    children = []
    simulator.configure(latency_s=0.2)  # every API call takes a round trip: starts are slow
    try:
        with processes.pointed_at(
            broker_url=redis_url, queue=queue, openai_base_url=simulator.base_url
        ):
            for kinds, threads in ((("start", "poll", "tool"), 2), (("wake",), 1)):
                children.append(
                    processes.start_worker(env, concurrency=threads, queue=queue, kinds=kinds)
                )
            woken = create_run("long", strategy="webhook", metadata={"sim_duration_s": "60"})
            enqueue.send(enqueue.START_RUN, woken.pk)
            wait_for(lambda: Run.objects.get(pk=woken.pk).remote_id, "the first start", 60)
            assert poll_now(Run.objects.get(pk=woken.pk))  # both workers up and warm
            wait_for(lambda: Run.objects.get(pk=woken.pk).polls == 1, "a first wake", 60)
            backlog = [create_run(f"run {i}", metadata={"sim_duration_s": "60"}) for i in range(40)]
            for run in backlog:
                enqueue.send(enqueue.START_RUN, run.pk)

            assert poll_now(Run.objects.get(pk=woken.pk))
            asked = time.monotonic()
            wait_for(lambda: Run.objects.get(pk=woken.pk).polls == 2, "the woken poll", 30)
            waited = time.monotonic() - asked
            waiting = Run.objects.filter(pk__in=[r.pk for r in backlog], remote_id="").count()
    finally:
        simulator.configure(latency_s=0.0)
        for child in children:
            processes.stop(child)

    assert waited < 3.0
    assert waiting > len(backlog) // 2
