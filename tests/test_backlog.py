"""A message queued behind a backlog is not a lost message: the sweep asks the broker first.

At 10,000 runs the sweep used to re-arm every run overdue by its grace, though most of those
runs were overdue only because their poll waited in a queue thousands deep; each re-arm added a
message to that queue, so the backlog fed on itself (59,335 polls for 10,000 runs). Now the sweep
adds at most a batch, less what already waits in the queue it would add to, and always the few
most overdue (``runs.engine.enqueue.waiting``, ``runs.engine.enqueue.room``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from project.celery import app as celery_app
from runs.engine import enqueue
from runs.engine.sweep import sweep
from runs.models import Run
from runs_dev import processes
from tests.clock import ago


@pytest.fixture
def overdue_runs(run_row, settings, monkeypatch) -> list[Run]:
    """Three runs overdue by a minute or more, and a floor of one re-arm per pass (not 10)."""
    settings.RUNS_SWEEP_GRACE_S = 10
    monkeypatch.setattr(enqueue, "RESCUE_FLOOR", 1)
    return [
        run_row("in_progress", remote_id=f"resp_{i}", next_poll_at=ago(60 + i)) for i in range(3)
    ]


def woken(sent_tasks) -> list[int]:
    return [args[0] for name, args, _ in sent_tasks if name == enqueue.POLL_RUN]


@pytest.mark.django_db
@pytest.mark.parametrize("waiting", [1000, 5000])
def test_a_queue_a_batch_deep_gets_only_the_most_overdue_run(
    overdue_runs, sent_tasks, monkeypatch, waiting
) -> None:
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: waiting)
    assert sweep(batch=1000).rearmed == 1
    most_overdue = min(overdue_runs, key=lambda r: r.next_poll_at)
    assert woken(sent_tasks) == [most_overdue.pk]
    others = Run.objects.exclude(pk=most_overdue.pk)
    assert all(row.poll_generation == 0 for row in others)  # no ticket taken from the rest


@pytest.mark.django_db
def test_it_fills_what_is_left_of_a_batch_the_most_overdue_first(
    overdue_runs, sent_tasks, monkeypatch
) -> None:
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 998)
    assert sweep(batch=1000).rearmed == 2
    oldest = sorted(overdue_runs, key=lambda r: r.next_poll_at)[:2]
    assert woken(sent_tasks) == [r.pk for r in oldest]


@pytest.mark.django_db
def test_the_broker_is_asked_only_when_something_is_overdue_and_about_the_queue_it_adds_to(
    run_row, sent_tasks, monkeypatch, settings
) -> None:
    settings.RUNS_SWEEP_GRACE_S = 10
    asked: list[tuple[str, str | None]] = []

    def waiting(name: str, kind: str | None = None) -> int:
        asked.append((name, kind))
        return 0

    monkeypatch.setattr(enqueue, "waiting", waiting)
    run_row("in_progress", remote_id="resp_on_time", next_poll_at=ago(1))
    sweep()
    assert asked == []
    run_row("in_progress", remote_id="resp_late", next_poll_at=ago(60))
    lost = run_row("pending")
    Run.objects.filter(pk=lost.pk).update(created_at=ago(60))
    sweep()
    assert asked == [(enqueue.POLL_RUN, "wake"), (enqueue.START_RUN, "start")]


@pytest.mark.django_db
def test_lost_starts_wait_while_the_start_queue_is_deep_but_the_oldest_still_go(
    run_row, sent_tasks, monkeypatch, settings
) -> None:
    settings.RUNS_SWEEP_GRACE_S = 10
    monkeypatch.setattr(enqueue, "RESCUE_FLOOR", 1)
    lost = [run_row("pending") for _ in range(3)]
    Run.objects.filter(pk__in=[r.pk for r in lost]).update(created_at=ago(60))
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 10_000)
    assert sweep().restarted == 1
    assert sent_tasks == [("runs.start_run", (lost[0].pk,), None)]
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 0)
    Run.objects.filter(pk__in=[r.pk for r in lost]).update(next_poll_at=None)
    assert sweep().restarted == 3


@pytest.mark.django_db
@pytest.mark.parametrize(("depth", "resent"), [(5, 1), (4, 1), (3, 2), (1, 3)])
def test_a_start_queue_with_a_message_for_every_run_waiting_to_start_lost_none(
    run_row, sent_tasks, monkeypatch, settings, depth, resent
) -> None:
    """Five runs wait to start, three of them overdue: behind a backlog of starts far below a
    batch, the queue's depth against those five says how many messages can be missing."""
    settings.RUNS_SWEEP_GRACE_S = 10
    monkeypatch.setattr(enqueue, "RESCUE_FLOOR", 1)
    overdue = [run_row("pending") for _ in range(3)]
    Run.objects.filter(pk__in=[r.pk for r in overdue]).update(created_at=ago(60))
    run_row("pending"), run_row("pending")  # just created
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: depth)
    assert sweep(batch=1000).restarted == resent
    assert sent_tasks == [("runs.start_run", (r.pk,), None) for r in overdue[:resent]]


@pytest.mark.django_db
def test_a_batch_waiting_to_submit_has_its_message_in_the_start_queue_too(
    run_row, sent_tasks, monkeypatch, settings
) -> None:
    from runs.models import Batch

    settings.RUNS_SWEEP_GRACE_S = 10
    monkeypatch.setattr(enqueue, "RESCUE_FLOOR", 1)
    lost = [run_row("pending") for _ in range(2)]
    Run.objects.filter(pk__in=[r.pk for r in lost]).update(created_at=ago(60))
    Batch.objects.create(model="gpt-4.1-mini")  # just created: its submit is on its way
    # Three messages for two runs and a batch: nothing lost, the floor alone.
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 3)
    assert sweep(batch=1000).restarted == 1


@pytest.mark.django_db
def test_where_starts_share_a_queue_its_depth_is_not_read_as_starts(
    run_row, sent_tasks, monkeypatch, settings
) -> None:
    """On the default queue, wakes and the sweep's own messages wait beside the starts: only a
    batch less the depth, as for every other kind."""
    settings.RUNS_SWEEP_GRACE_S = 10
    settings.RUNS_QUEUES = {"start": None, "poll": None, "wake": None, "tool": None}
    monkeypatch.setattr(enqueue, "RESCUE_FLOOR", 1)
    lost = [run_row("pending") for _ in range(3)]
    Run.objects.filter(pk__in=[r.pk for r in lost]).update(created_at=ago(60))
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 500)
    assert sweep(batch=1000).restarted == 3


@pytest.mark.parametrize(
    ("queues", "own"),
    [
        ({"start": "runs.starts", "wake": "runs.wakes"}, True),
        ({"start": "runs.starts", "wake": "runs.starts"}, False),
        ({"start": None}, False),
        ({"start": "celery"}, False),  # the default queue: the sweep and unrouted kinds go there
    ],
)
def test_a_kind_has_a_queue_of_its_own_when_nothing_else_is_sent_there(
    settings, monkeypatch, queues, own
) -> None:
    settings.RUNS_QUEUES = queues
    monkeypatch.setitem(celery_app.conf, "task_default_queue", "celery")
    assert enqueue.own_queue("start") is own


@pytest.mark.django_db
def test_the_run_of_a_released_tool_round_is_woken_first_and_within_the_room_too(
    overdue_runs, run_row, sent_tasks, monkeypatch, settings
) -> None:
    """A tool round whose submit claim was abandoned is released and its run woken ahead of the
    overdue runs, through the same count; the wake is not a re-arm, so it is not counted as one."""
    from runs.models import ToolCall

    waiting_on_tools = run_row("requires_action", remote_id="resp_tools", next_poll_at=ago(1))
    ToolCall.objects.create(
        run=waiting_on_tools, call_id="call_1", name="f", state=ToolCall.State.SUCCEEDED,
        submitted_at=ago(settings.RUNS_CLAIM_TIMEOUT_S + 60),
    )  # fmt: skip
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: 998)  # room for two
    report = sweep(batch=1000)
    assert report.released_rounds == 1 and report.rearmed == 1
    most_overdue = min(overdue_runs, key=lambda r: r.next_poll_at)
    assert woken(sent_tasks) == [waiting_on_tools.pk, most_overdue.pk]
    assert ToolCall.objects.get(call_id="call_1").submitted_at is None


@pytest.mark.django_db
def test_a_released_round_whose_run_is_overdue_too_is_woken_once(
    run_row, sent_tasks, settings
) -> None:
    from runs.models import ToolCall

    settings.RUNS_SWEEP_GRACE_S = 10
    late = run_row("requires_action", remote_id="resp_late_tools", next_poll_at=ago(60))
    ToolCall.objects.create(
        run=late, call_id="call_2", name="f", state=ToolCall.State.ERROR,
        submitted_at=ago(settings.RUNS_CLAIM_TIMEOUT_S + 60),
    )  # fmt: skip
    report = sweep()
    assert (report.released_rounds, report.rearmed) == (1, 0)
    assert woken(sent_tasks) == [late.pk]


@pytest.mark.django_db
def test_a_broker_that_cannot_say_leaves_the_sweep_as_it_was(
    overdue_runs, sent_tasks, monkeypatch
) -> None:
    monkeypatch.setattr(enqueue, "waiting", lambda name, kind=None: None)
    assert sweep(batch=1000).rearmed == 3


# --- the count, from real brokers ----------------------------------------------------------------


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """This process pointed at a real broker, on a private deployment's queues."""
    url = redis_url if request.param == "redis" else request.getfixturevalue("amqp_url")
    queue = f"runs-backlog-{uuid.uuid4().hex[:8]}"
    with processes.pointed_at(broker_url=url, queue=queue, openai_base_url="http://unused"):
        yield queue
        with celery_app.connection_for_write() as conn:
            for name in (queue, *processes.private_queues(queue).values()):
                conn.default_channel.queue_delete(name)
                conn.default_channel.exchange_delete(name)


def test_waiting_counts_the_messages_in_the_queue_of_the_kind(
    broker: str,
) -> None:
    assert enqueue.waiting(enqueue.POLL_RUN, "wake") == 0  # not even declared yet
    for run_id in range(3):
        enqueue.send(enqueue.POLL_RUN, run_id, 1, kind="wake")
    enqueue.send(enqueue.START_RUN, 9)
    assert enqueue.waiting(enqueue.POLL_RUN, "wake") == 3
    assert enqueue.waiting(enqueue.START_RUN, "start") == 1
    assert enqueue.waiting(enqueue.POLL_RUN, "poll") == 0


def test_waiting_is_unknown_when_the_broker_does_not_answer() -> None:
    dead = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    with processes.pointed_at(broker_url=dead, queue="runs-nowhere", openai_base_url="x"):
        assert enqueue.waiting(enqueue.POLL_RUN, "wake") is None


def test_a_host_route_that_names_an_exchange_and_no_queue_leaves_the_count_unknown(
    monkeypatch,
) -> None:
    router = celery_app.amqp.router
    monkeypatch.setattr(router, "route", lambda options, name: {"exchange": "tasks"})
    assert enqueue.waiting(enqueue.POLL_RUN, "wake") is None
