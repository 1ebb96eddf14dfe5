"""Schedules that follow the window (issue 16): a run in a 2h/8h background window is polled at
most ``RUNS_WINDOW_MAX_POLLS`` times over it, a webhook run's safety net looks once, at the
window's end, the deadline is the window plus its grace from when the response started, and
``RUNS_TIME_SCALE`` compresses all of it.

The unit tests read the schedules and the writer's hops; the integration tests run an 8h window
compressed to 8 s (one time scale for our schedules and the simulator's clock) through a real
worker, Redis and the simulator, and count the retrieves the simulator saw.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from runs.backends.base import RemoteState
from runs.backends.responses import ResponsesBackend
from runs.conf import settings as runs_settings
from runs.engine import answers, lifecycle, tool_round, writer
from runs.models import Run, ToolCall
from runs.schedule import describe, next_delay, schedule_for
from runs.services import create_run
from runs.tasks import start_run

EIGHT_HOURS = 8 * 3600.0
GRACE = 1800.0  # RUNS_WINDOW_GRACE_S's default


# --- the schedules -------------------------------------------------------------------------------


def test_polling_an_8h_window_costs_at_most_20_retrieves_the_last_at_its_end():
    schedule = schedule_for("poll", "8h")
    assert schedule.base == schedule.cap == EIGHT_HOURS / 20  # every 24 minutes
    times = schedule.poll_times(EIGHT_HOURS)
    assert len(times) == 20
    assert times[-1] == pytest.approx(EIGHT_HOURS)
    # The tutorial schedule (5 s at most) would retrieve about 5,800 times over 8 hours.
    assert schedule_for("poll").predicted_polls(EIGHT_HOURS) > 5000


def test_the_safety_net_of_a_window_looks_once_at_its_end():
    schedule = schedule_for("webhook", "8h")
    assert schedule.poll_times(EIGHT_HOURS) == [EIGHT_HOURS]


@pytest.mark.django_db
def test_a_webhook_run_open_past_the_windows_middle_costs_one_poll_before_its_end(make_run):
    """A run still open at the window's middle is not looked at there: the only safety-net poll
    before the window's end is the one at its end (a lost event costs that one, no more)."""
    run = make_run(
        "in_progress",
        remote_id="resp_1",
        strategy="webhook",
        completion_window="8h",
        mode="8h",
        deadline_at=timezone.now() + timedelta(seconds=EIGHT_HOURS + GRACE),
    )
    still = RemoteState(remote_id="resp_1", status="in_progress", remote_status="in_progress")
    polls, elapsed, attempt = 0, 0.0, 0
    while True:
        decision = answers.decide_answer(
            run, still, run.poll_generation, answers.Counters(), source="poll", attempt=attempt
        )
        elapsed += decision.poll_in_s
        if elapsed > EIGHT_HOURS:
            break
        polls, attempt = polls + 1, attempt + 1
    assert polls == 1  # at the window's end, and none at its middle
    assert schedule_for("webhook", "8h").predicted_polls(EIGHT_HOURS) <= schedule_for(
        "poll", "8h"
    ).predicted_polls(EIGHT_HOURS)


def test_the_polls_follow_max_polls_and_the_2h_window(settings):
    settings.RUNS_WINDOW_MAX_POLLS = 10
    assert schedule_for("poll", "2h").base == 2 * 3600 / 10


def test_the_time_scale_compresses_the_window(settings):
    settings.RUNS_TIME_SCALE = 1 / 3600
    assert schedule_for("poll", "8h").base == pytest.approx(8 / 20)
    assert schedule_for("webhook", "8h").base == pytest.approx(8.0)
    # soonest runs keep their schedules: only window-derived waits are scaled.
    assert schedule_for("poll").base == settings.RUNS_POLL_BASE_S


def test_a_server_hint_may_delay_a_window_poll_never_bring_it_forward():
    window = schedule_for("poll", "8h")
    assert next_delay(window, 0, poll_after_ms=2000) == EIGHT_HOURS / 20
    assert next_delay(schedule_for("poll"), 0, poll_after_ms=2000) == 2.0  # soonest: it wins


# --- deadlines -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_windowed_run_gets_the_window_plus_grace_as_its_deadline(settings):
    run = create_run("hi", completion_window="8h")
    assert (run.deadline_at - run.created_at).total_seconds() == pytest.approx(
        EIGHT_HOURS + GRACE, abs=0.5
    )
    settings.RUNS_TIME_SCALE = 0.001
    run = create_run("hi", completion_window="2h")
    length = (run.deadline_at - run.created_at).total_seconds()
    assert length == pytest.approx((7200 + GRACE) * 0.001, abs=0.05)


@pytest.mark.django_db
def test_a_deadline_shorter_than_the_window_is_refused():
    with pytest.raises(ValidationError, match="shorter than the 2h window"):
        create_run("hi", completion_window="2h", deadline_s=3600)
    assert not Run.objects.exists()
    run = create_run("hi", completion_window="2h", deadline_s=3 * 3600)
    assert (run.deadline_at - run.created_at).total_seconds() == pytest.approx(3 * 3600, abs=0.5)


@pytest.fixture
def responses_api(monkeypatch, settings):
    """The Responses backend without a server: a create and a submit answer ``queued``."""
    settings.RUNS_MAX_RPS = 0  # no request budget: the start goes now

    def queued(remote_id: str) -> RemoteState:
        return RemoteState(remote_id=remote_id, status="queued", remote_status="queued")

    monkeypatch.setattr(ResponsesBackend, "create_thread", lambda self, run: "conv_1")
    monkeypatch.setattr(ResponsesBackend, "create", lambda self, run, *a: queued("resp_1"))
    monkeypatch.setattr(
        ResponsesBackend, "submit_tool_outputs", lambda self, run, outs: queued("resp_2")
    )


@pytest.mark.django_db
def test_a_windowed_run_started_late_gets_its_whole_window_and_grace(responses_api, sent_tasks):
    """The window starts at the create, not at create_run: a start that waited longer than the
    grace (the queue, the budget, retries) must not be expired at its window's end poll."""
    run = create_run("hi", completion_window="2h")
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() + timedelta(minutes=5))
    before = timezone.now()
    assert lifecycle.start(run.pk)["started"]
    run.refresh_from_db()
    assert run.status == "queued"
    assert run.deadline_at >= before + timedelta(seconds=7200 + GRACE)
    # The first poll is the window's step, not cut short by the old deadline.
    assert (run.next_poll_at - before).total_seconds() == pytest.approx(7200 / 20, abs=5)


@pytest.mark.django_db
def test_a_longer_deadline_given_is_kept_at_the_start(responses_api, sent_tasks):
    run = create_run("hi", completion_window="2h", deadline_s=5 * 3600)
    given = run.deadline_at
    lifecycle.start(run.pk)
    run.refresh_from_db()
    assert run.deadline_at == given


@pytest.mark.django_db
def test_each_tool_round_on_responses_gets_a_window_of_its_own(responses_api, make_run, sent_tasks):
    """The outputs start a new background response: its window counts from the submit."""
    run = make_run(
        "requires_action",
        remote_id="resp_1",
        completion_window="2h",
        mode="2h",
        deadline_at=timezone.now() + timedelta(minutes=5),  # round 1 took most of the window
    )
    call = ToolCall.objects.create(
        run=run, call_id="call_1", name="add", output="5", state=ToolCall.State.SUCCEEDED
    )
    before = timezone.now()
    decision = tool_round._submit(run, run.poll_generation, 1, [call], answers.Counters(), False)
    assert decision.move is not None and decision.move.to_status == "queued"
    assert decision.poll_in_s == pytest.approx(7200 / 20)  # not capped by the old deadline
    assert writer.apply(decision)
    run.refresh_from_db()
    assert run.remote_id == "resp_2"
    assert run.deadline_at >= before + timedelta(seconds=7200 + GRACE)


# --- a long wait is hops, never one long countdown ------------------------------------------------


@pytest.mark.django_db
def test_a_window_poll_is_stored_as_a_due_time_and_reached_by_hops(make_run, sent_tasks):
    deadline = timezone.now() + timedelta(seconds=EIGHT_HOURS + GRACE)
    run = make_run(
        "in_progress", remote_id="resp_1", completion_window="8h", mode="8h", deadline_at=deadline
    )
    still = RemoteState(remote_id="resp_1", status="in_progress", remote_status="in_progress")
    decision = answers.decide_answer(
        run, still, run.poll_generation, answers.Counters(), source="poll", attempt=1
    )
    assert decision.poll_in_s == pytest.approx(EIGHT_HOURS / 20)
    assert writer.apply(decision) is not None
    run.refresh_from_db()
    due_in = (run.next_poll_at - timezone.now()).total_seconds()
    assert due_in == pytest.approx(EIGHT_HOURS / 20, abs=5)
    [(name, _, countdown)] = sent_tasks
    assert name == "runs.poll_run"
    assert countdown <= 300.0  # RUNS_MAX_COUNTDOWN_S: the rest is hops


# --- when the next poll is due, and why ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"completion_window": "8h"}, "in 24 min: window 8h: every 24 min, at most 20 polls"),
        (
            {"completion_window": "8h", "strategy": "webhook"},
            "in 24 min: safety net of the 8h window: the webhook ends the run; one poll at the "
            "window's end only in case it is lost",
        ),
        ({"strategy": "webhook"}, "in 24 min: safety net (30 s x2 up to 300 s): the webhook"),
        ({}, "in 24 min: poll schedule (0.5 s x1.5 up to 5 s), poll 1"),
    ],
)
def test_the_admin_says_when_the_next_poll_is_due_and_why(make_run, fields, why):
    now = timezone.now()
    run = make_run(
        "in_progress",
        remote_id="resp_1",
        next_poll_at=now + timedelta(minutes=24),
        deadline_at=now + timedelta(hours=9),
        **fields,
    )
    text = describe(run, now)
    assert text.startswith(why)
    # A countdown task waits at most RUNS_MAX_COUNTDOWN_S; a webhook run's safety net is a due
    # time runs.poll_due finds (RUNS_SAFETY_NET_MODE's default), which needs no hops.
    by_due = fields.get("strategy") == "webhook"
    how = "; found by runs.poll_due" if by_due else "; reached by hops (RUNS_MAX_COUNTDOWN_S)"
    assert text.endswith(how)


@pytest.mark.django_db
def test_the_next_poll_of_a_run_waiting_for_tools_or_its_deadline_or_ended(make_run):
    now = timezone.now()
    waiting = make_run("requires_action", remote_id="r", next_poll_at=now + timedelta(seconds=30))
    assert describe(waiting, now) == (
        "in 30 s: waiting for tool outputs: a check on the round (its tools, or a manual output)"
    )
    late = make_run(
        "in_progress",
        remote_id="r",
        next_poll_at=now + timedelta(seconds=5),
        deadline_at=now + timedelta(seconds=5),
    )
    assert "the deadline" in describe(late, now)
    done = make_run("completed", remote_id="r")
    assert describe(done, now) == "no more polls: the run has ended"


# --- through the worker and the simulator, on a compressed clock ---------------------------------

#: 8 hours in 8 seconds: the window's polls come every 0.4 s, the safety net's at 8 s.
SCALE = 1 / 3600
WINDOW = EIGHT_HOURS * SCALE


@pytest.fixture
def compressed(settings, simulator):
    """One time scale for our schedules and the simulator's clock. Unwindowed responses are made
    slow (20-30 s), so a run that ends within the window proves the window reached the simulator;
    windowed ones end within 5-40 % of it (well before the safety net's one look, at its end)."""
    keys = ("time_scale", "duration_min_s", "duration_max_s", "window_fraction_max")
    before = {key: simulator.config()[key] for key in keys}
    settings.RUNS_TIME_SCALE = SCALE
    simulator.configure(
        time_scale=SCALE, duration_min_s=20.0, duration_max_s=30.0, window_fraction_max=0.4
    )
    yield
    simulator.configure(**before)


def retrieves(simulator, run: Run) -> int:
    return simulator.stats()["objects"][run.remote_id]["retrieve"]


@pytest.mark.integration
def test_an_8h_run_tracked_by_webhook_costs_one_retrieve(
    compressed, webhook_delivery, simulator, wait_terminal
):
    run = create_run(
        "long job",
        strategy="webhook",
        completion_window="8h",
        metadata={"sim_outcome": "completed"},
    )
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=3 * WINDOW)
    assert run.status == "completed"
    assert (run.completed_at - run.created_at).total_seconds() < WINDOW / 2
    assert retrieves(simulator, run) == run.polls == 1
    assert run.webhook_events == 1
    assert run.api_calls == 3  # the conversation, the create, the one retrieve


@pytest.mark.integration
def test_a_lost_webhook_is_caught_by_the_safety_net_at_the_windows_end(
    compressed, webhook_delivery, simulator, wait_terminal, beat_sending_poll_due
):
    simulator.configure(webhook_drop_rate=1.0)
    run = create_run(
        "long job",
        strategy="webhook",
        completion_window="8h",
        metadata={"sim_outcome": "completed"},
    )
    start_run.delay(run.pk)
    with beat_sending_poll_due(every_s=0.2):  # the safety net is a due time (the default)
        run = wait_terminal(run.pk, timeout=3 * WINDOW)
    assert run.status == "completed"
    assert run.webhook_events == 0
    assert retrieves(simulator, run) == run.polls == 1
    # The one look came at the window's end; a batch takes a run up to half its interval early.
    early = min(runs_settings.RUNS_POLL_DUE_INTERVAL_S / 2, lifecycle.HOP_SLACK_S)
    assert (run.completed_at - run.created_at).total_seconds() >= WINDOW - early


@pytest.mark.integration
def test_an_8h_run_tracked_by_polling_costs_at_most_20_retrieves(
    compressed, worker, simulator, wait_terminal
):
    # The worst case: the answer comes at 90 % of the window.
    run = create_run(
        "long job",
        completion_window="8h",
        metadata={"sim_outcome": "completed", "sim_duration_s": str(0.9 * WINDOW)},
    )
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=3 * WINDOW)
    assert run.status == "completed"
    assert 15 <= retrieves(simulator, run) == run.polls <= 20


@pytest.mark.django_db
def test_the_run_page_shows_the_options_and_the_next_poll(admin_client, make_run):
    now = timezone.now()
    run = make_run(
        "in_progress",
        remote_id="resp_page",
        completion_window="8h",
        mode="8h",
        reasoning_effort="low",
        next_poll_at=now + timedelta(minutes=24),
        deadline_at=now + timedelta(hours=9),
    )
    html = admin_client.get(f"/admin/runs/run/{run.pk}/change/").content.decode()
    assert "8h background window" in html  # the mode, read-only
    assert "window 8h: every 24 min, at most 20 polls" in html  # the field and the timeline
    assert 'class="timeline-next"' in html
