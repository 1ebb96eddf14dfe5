"""RabbitMQ as the broker: runs end by poll, by webhook and through a killed worker; tools work.

A CI-sized subset of the broker tests, with ``CELERY_BROKER_URL`` on RabbitMQ and ``REDIS_URL``
on the test Redis, as a production set-up would have them. Workers are real subprocesses
(``runs_dev.processes.start_worker``) on a private set of queues with unique names, deleted
afterwards, so test sessions sharing one RabbitMQ never take each other's tasks. The RabbitMQ is
``RUNS_TEST_AMQP_URL`` (default: guest on 127.0.0.1:5672); when it does not answer these tests
skip with that reason, and fail under ``RUNS_TEST_STRICT=1``.

The first tests need no server: they pin the bug this file was written for. The pub/sub and
budget URLs used to default to the broker URL, so on RabbitMQ every start and poll raised
``ValueError: Redis URL must specify one of the following schemes``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection

from runs import budget, live
from runs.models import Run, ToolCall
from runs.services import create_run
from runs.services import start as start_run
from runs.status import TERMINAL
from runs_dev import processes

from .through_broker import QUICK, creates, wait_for

AMQP_URL = os.environ.get("RUNS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
ROOT = Path(__file__).resolve().parent.parent


# --- no server needed: the side channels never see an AMQP URL -----------------------------------


def side_channels(**environ: str) -> dict[str, str]:
    """The pub/sub and budget URLs ``project.settings`` derives from this environment."""
    code = (
        "import json, project.settings as s; "
        "print(json.dumps([s.RUNS_PUBSUB_URL, s.RUNS_BUDGET_REDIS_URL, s.REDIS_URL]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CELERY_", "RUNS_"))}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, **environ}, cwd=ROOT, capture_output=True
    )
    assert out.returncode == 0, out.stderr.decode()
    pubsub, budget_url, redis_url = json.loads(out.stdout)
    return {"pubsub": pubsub, "budget": budget_url, "redis": redis_url}


def test_on_rabbitmq_the_side_channels_use_redis_url():
    assert side_channels(CELERY_BROKER_URL=AMQP_URL, REDIS_URL="redis://cache:6379/2") == {
        "pubsub": "redis://cache:6379/2",
        "budget": "redis://cache:6379/2",
        "redis": "redis://cache:6379/2",
    }


def test_on_rabbitmq_without_a_redis_url_the_side_channels_are_off():
    """Off, not a Redis on each worker's own machine (one budget per worker, or none): REDIS_URL
    stays empty, so ``conf.default_redis_url`` finds none and the check runs.W301 says so."""
    assert side_channels(CELERY_BROKER_URL=AMQP_URL) == {"pubsub": "", "budget": "", "redis": ""}


def test_on_redis_they_still_default_to_the_broker():
    url = "redis://broker:6379/0"
    assert side_channels(CELERY_BROKER_URL=url) == {"pubsub": url, "budget": url, "redis": ""}


def test_publishing_to_a_url_that_is_not_redis_logs_once_and_never_raises(
    settings, caplog, monkeypatch
):
    settings.RUNS_PUBSUB_URL = AMQP_URL
    monkeypatch.setattr(live, "_last_warning", -live.WARN_EVERY_S)
    with caplog.at_level(logging.WARNING, logger="runs.live"):
        for run_id in (1, 2, 3):
            live.publish_status_change(
                None, run_id=run_id, from_status="queued", to_status="in_progress", source="poll"
            )
    assert len(caplog.records) == 1
    assert "not a redis://" in caplog.records[0].getMessage()
    assert "guest" not in caplog.text  # the URL's credentials are never logged


def test_the_app_resolves_both_side_channels_alike_when_the_host_sets_neither(settings):
    """A host that sets only REDIS_URL and an AMQP broker: live status and the budget both take
    REDIS_URL (one resolver, ``conf.default_redis_url``)."""
    settings.RUNS_PUBSUB_URL = None
    settings.RUNS_BUDGET_REDIS_URL = ""
    settings.REDIS_URL = "redis://cache:6379/2"
    settings.CELERY_BROKER_URL = AMQP_URL

    assert live.pubsub_url() == budget.redis_url() == "redis://cache:6379/2"


def test_a_budget_with_no_redis_lets_calls_go_ahead(settings, caplog, monkeypatch):
    settings.RUNS_MAX_RPS = 5.0
    settings.RUNS_BUDGET_REDIS_URL = ""
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = AMQP_URL
    budget.reset_connection()
    monkeypatch.setattr(budget, "_last_warning", -budget.WARN_EVERY_S)
    with caplog.at_level(logging.WARNING, logger="runs.budget"):
        assert [budget.take("create"), budget.take("poll")] == [0.0, 0.0]
    assert budget.redis_url() is None
    assert len(caplog.records) == 1
    budget.reset_connection()


def test_manage_py_check_says_the_side_channels_are_off(settings):
    from runs.checks import check_queues

    settings.RUNS_PUBSUB_URL = AMQP_URL
    settings.RUNS_MAX_RPS = 5.0
    settings.RUNS_BUDGET_REDIS_URL = ""
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = AMQP_URL

    (warning,) = check_queues()
    assert warning.id == "runs.W301"
    assert "RUNS_PUBSUB_URL" in warning.msg and "RUNS_MAX_RPS" in warning.msg
    assert "guest" not in warning.msg + (warning.hint or "")


# --- a real worker on RabbitMQ -------------------------------------------------------------------


class Rabbit:
    """A private deployment on RabbitMQ: its queue names and the children's environment."""

    def __init__(self, amqp: str, redis_url: str, simulator: Any) -> None:
        self.queue = f"runs-amqp-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": processes.database_url(),
            "CELERY_BROKER_URL": amqp,
            "REDIS_URL": redis_url,  # live status and the budget: never the broker's URL
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "OPENAI_BASE_URL": simulator.base_url,
            "OPENAI_API_KEY": "sk-local-simulator",
            "RUNS_POLL_BASE_S": "0.2",
            "RUNS_POLL_CAP_S": "1",
            "RUNS_SWEEP_INTERVAL_S": "1",
            "RUNS_SWEEP_GRACE_S": "1",
            # No beat here but the killed worker's test's: no run may go to runs.poll_due.
            "RUNS_POLL_AUTO_LATE_S": "3600",
            "RUNS_LOG_LEVEL": "ERROR",
        }
        self.env.pop("RUNS_PUBSUB_URL", None)  # the project's default, the case that broke

    def worker(self) -> subprocess.Popen[bytes]:
        return processes.start_worker(self.env, concurrency=4, queue=self.queue)

    def delete_queues(self, amqp: str) -> None:
        with Connection(amqp) as conn:
            channel = conn.default_channel
            for name in (self.queue, *processes.private_queues(self.queue).values()):
                channel.queue_delete(name)
                channel.exchange_delete(name)


@pytest.fixture(scope="module")
def rabbit(
    amqp_url: str, redis_url: str, simulator: Any, django_db_setup: None, django_db_blocker: Any
) -> Iterator[Rabbit]:
    """This process and one worker subprocess on a private deployment on RabbitMQ."""
    deployment = Rabbit(amqp_url, redis_url, simulator)
    with (
        django_db_blocker.unblock(),
        processes.pointed_at(
            broker_url=amqp_url, queue=deployment.queue, openai_base_url=simulator.base_url
        ),
    ):
        worker = deployment.worker()
        try:
            yield deployment
        finally:
            processes.stop(worker)
            deployment.delete_queues(amqp_url)


def started(text: str, **options: Any) -> Run:
    run = create_run(text, **options)
    start_run(run)  # on commit: the test database commits at once (transactional_db)
    return run


def ended(run: Run, timeout: float = 60.0) -> Run:
    return wait_for(
        lambda: (r := Run.objects.get(pk=run.pk)).status in TERMINAL and r, f"run {run.pk}", timeout
    )


@pytest.mark.integration
def test_runs_end_by_polling_with_live_status_on_redis(
    rabbit, simulator, redis_url, transactional_db
):
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.psubscribe("runs:run:*")
    runs = [started(f"poll {i}", metadata=QUICK) for i in range(3)]

    finished = [ended(run) for run in runs]

    assert [r.status for r in finished] == ["completed"] * 3
    assert [creates(simulator, r) for r in finished] == [1] * 3
    assert all(r.polls >= 1 and r.error_retries == 0 and not r.last_error for r in finished)
    heard = set()
    while (message := listener.get_message(timeout=1.0)) is not None:
        if message["type"] == "pmessage":
            change = json.loads(message["data"])
            heard.add((change["run_id"], change["to_status"]))
    listener.close()
    assert {(r.pk, "completed") for r in finished} <= heard  # published from the worker


@pytest.mark.integration
def test_a_run_ends_by_webhook(rabbit, simulator, live_server, webhook_secret, transactional_db):
    simulator.configure(
        webhook_url=live_server.url + "/webhooks/openai/",
        webhook_secret=webhook_secret,
        webhook_delay_s=0.0,
    )
    try:
        run = started("hooked", strategy="webhook", metadata=QUICK)
        run = ended(run, timeout=20)  # the safety-net poll would come after 30 s
    finally:
        simulator.configure(webhook_url=None, webhook_secret=None)

    assert run.status == "completed"
    assert run.webhook_events == 1
    assert run.polls == 1  # the poll the webhook woke, sent to the wakes queue over AMQP


@pytest.mark.integration
def test_a_tool_round_completes(rabbit, simulator, transactional_db):
    run = started(
        "What is 2 + 3?",
        tools=["add"],
        metadata={**QUICK, "sim_tool_rounds": "1", "sim_tool_args": '{"a": 2, "b": 3}'},
    )

    run = ended(run)

    assert run.status == "completed", run.last_error
    call = ToolCall.objects.get(run=run)
    assert (call.state, call.output) == ("submitted", "5")


@pytest.mark.integration
def test_a_killed_workers_runs_still_end(
    amqp_url, redis_url, simulator, transactional_db, tmp_path
):
    """SIGKILL drops the worker's connection: RabbitMQ redelivers what it held unacknowledged
    (its countdown polls), a new worker takes them, the poll tickets keep it to one API call
    each, and beat's sweep covers a tick killed between its claim and its re-arm."""
    deployment = Rabbit(amqp_url, redis_url, simulator)
    children: list[subprocess.Popen[bytes]] = []
    try:
        with processes.pointed_at(
            broker_url=amqp_url, queue=deployment.queue, openai_base_url=simulator.base_url
        ):
            children.append(deployment.worker())
            runs = [
                started(f"long {i}", metadata={**QUICK, "sim_duration_s": "3"}) for i in range(3)
            ]
            wait_for(
                lambda: all(Run.objects.get(pk=r.pk).polls for r in runs), "every run polled", 60
            )
            processes.kill(children[0])
            children.append(deployment.worker())
            children.append(processes.start_beat(deployment.env, tmp_path))
            finished = [ended(run, timeout=90) for run in runs]
    finally:
        for child in children:
            processes.stop(child)
        deployment.delete_queues(amqp_url)

    assert [r.status for r in finished] == ["completed"] * 3
    assert [creates(simulator, r) for r in finished] == [1] * 3
