"""The error policy inside a tracked run, through the real broker and worker.

The simulator answers the run's retrieves with rate limits, server errors or answers too slow
for our client's deadline, and counts what it served; the engine must retry each on a countdown
(never a sleep), count the errors in a row, reset that count on a good answer, and fail the run
only past a read's allowance, 4x ``RUNS_MAX_ERROR_RETRIES``. Only retrieves are faulted
(``fault_only``), so the create goes through and every fault lands in a poll tick.
"""

from __future__ import annotations

import pytest

from runs import errors
from runs.client import get_client, get_create_client
from runs.engine import answers
from runs.errors import Decision
from runs.schedule import Schedule
from runs.services import create_run
from runs.tasks import start_run

from .through_broker import QUICK, calls_of, faults, faults_served, remote, wait_for

pytestmark = pytest.mark.integration

RETRIEVE = "responses.retrieve"  # the simulator's name for GET /v1/responses/{id}


@pytest.fixture(autouse=True)
def fast_polls(settings) -> None:
    settings.RUNS_POLL_BASE_S = 0.2
    settings.RUNS_POLL_CAP_S = 1.0


@pytest.fixture
def decisions(monkeypatch) -> list[Decision]:
    """Every error-policy decision the engine takes for a failed call; calls through."""
    seen: list[Decision] = []
    real_classify = answers.classify

    def classify(*args, **kwargs) -> Decision:
        decision = real_classify(*args, **kwargs)
        seen.append(decision)
        return decision

    monkeypatch.setattr(answers, "classify", classify)
    return seen


@pytest.fixture
def short_call_deadline(settings):
    """Retrieves may take 0.5 s in all (the clients are cached: rebuilt before and after)."""
    before = settings.OPENAI_TIMEOUT_S
    settings.OPENAI_TIMEOUT_S = 0.5
    get_client.cache_clear()
    get_create_client.cache_clear()
    yield
    settings.OPENAI_TIMEOUT_S = before
    get_client.cache_clear()
    get_create_client.cache_clear()


def test_rate_limits_wait_for_retry_after_and_a_good_answer_resets_the_error_count(
    worker, simulator, decisions, wait_until, wait_terminal
):
    served_before = faults_served(simulator, "429")
    retrieves_before = calls_of(simulator, RETRIEVE)
    with faults(simulator, fault_429_rate=1.0, retry_after_ms=200, fault_only=[RETRIEVE]):
        run = create_run("rate limited", metadata=QUICK)
        start_run.delay(run.pk)
        wait_for(lambda: faults_served(simulator, "429") - served_before >= 3, "three 429s")
        wait_until(run.pk, lambda r: r.error_retries >= 3)  # counted, in a row
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "completed"
    assert run.error_retries == 0  # the good answer reset the count
    limited = faults_served(simulator, "429") - served_before
    assert limited >= 3
    # Each 429 was retried after the server's retry-after-ms (and up to a fifth more, so runs
    # throttled together come back apart), not after our own backoff (1 s).
    assert [(d.code, d.retry) for d in decisions] == [("rate_limited", True)] * limited
    assert all(0.2 <= d.countdown <= 0.24 for d in decisions)
    # Every retrieve, refused or not, is a tick counted on the run; the good ones on the object.
    retrieves = calls_of(simulator, RETRIEVE) - retrieves_before
    assert run.polls == retrieves
    assert remote(simulator, run)["retrieve"] == retrieves - limited
    assert run.api_calls == retrieves + 2  # the conversation and the response


def test_server_errors_past_a_reads_retry_limit_fail_the_run_after_exactly_that_many_retries(
    worker, simulator, settings, decisions, wait_terminal, monkeypatch
):
    """A read waits out an outage 4x ``RUNS_MAX_ERROR_RETRIES`` errors in a row (the run goes on
    at OpenAI meanwhile); past them it fails, and is cancelled there."""
    settings.RUNS_MAX_ERROR_RETRIES = 2
    monkeypatch.setattr(errors, "ERROR_BACKOFF", Schedule(base=0.1, factor=1.0, cap=0.1))
    served_before = faults_served(simulator, "500")
    retrieves_before = calls_of(simulator, RETRIEVE)
    with faults(simulator, fault_500_rate=1.0, fault_only=[RETRIEVE]):
        run = create_run("server errors", metadata={**QUICK, "sim_duration_s": "30"})
        start_run.delay(run.pk)
        run = wait_terminal(run.pk, timeout=30)

    assert run.status == "failed"
    assert run.last_error_code == "http_500"
    assert run.last_error.startswith("Could not retrieve the run:")
    # One attempt and eight retries (4 x 2), then the policy gives up.
    assert calls_of(simulator, RETRIEVE) - retrieves_before == 9
    assert faults_served(simulator, "500") - served_before == 9
    assert [(d.code, d.retry) for d in decisions] == [("http_500", True)] * 8 + [
        ("http_500", False)
    ]
    # Conversation + response create, nine retrieves, and the best-effort cancel that follows:
    # we gave up on the run, so it must not run on at OpenAI.
    assert (run.polls, run.api_calls, run.error_retries) == (9, 12, 8)
    assert list(run.events.values_list("from_status", "to_status", "source")) == [
        ("pending", "queued", "create"),
        ("queued", "failed", "poll"),
    ]
    remote = simulator.stats()["objects"][run.remote_id]
    assert (remote["cancel"], remote["status"]) == (1, "cancelled")


def test_a_read_outage_longer_than_the_deadline_is_waited_out_until_the_deadline_ends_the_run(
    worker, simulator, settings, wait_terminal, monkeypatch
):
    """Every retrieve fails for longer than the run may take: its reads are retried (more than
    a create's 2 tries), the deadline ends it, and the message says its calls were failing."""
    settings.RUNS_MAX_ERROR_RETRIES = 2
    monkeypatch.setattr(errors, "ERROR_BACKOFF", Schedule(base=0.2, factor=1.0, cap=0.2))
    with faults(simulator, fault_500_rate=1.0, fault_only=[RETRIEVE]):
        run = create_run("outage", deadline_s=1.5, metadata={**QUICK, "sim_duration_s": "30"})
        start_run.delay(run.pk)
        run = wait_terminal(run.pk, timeout=30)

    assert (run.status, run.last_error_code) == ("expired", "deadline_exceeded")
    assert run.polls > 3  # a create would have given up after its third try
    assert f"its last {run.error_retries} calls failed" in run.last_error
    assert simulator.stats()["objects"][run.remote_id]["cancel"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"fault_slow_rate": 1.0, "slow_s": 2.0}, id="late-answer"),
        pytest.param(
            {"fault_trickle_rate": 1.0, "trickle_s": 2.0, "trickle_interval_s": 0.1},
            id="trickled-answer",
        ),
    ],
)
def test_a_retrieve_cut_at_the_call_deadline_is_retried_and_the_run_completes(
    fault, worker, simulator, short_call_deadline, decisions, wait_until, wait_terminal
):
    """The answer would take 2 s, our client's deadline is 0.5 s: a timeout, retried later."""
    kind = "slow" if "fault_slow_rate" in fault else "trickle"
    served_before = faults_served(simulator, kind)
    with faults(simulator, fault_only=[RETRIEVE], **fault):
        run = create_run("slow answers", metadata=QUICK)
        start_run.delay(run.pk)
        wait_until(run.pk, lambda r: r.error_retries >= 1)
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "completed"
    assert run.error_retries == 0
    timed_out = faults_served(simulator, kind) - served_before
    assert timed_out >= 1
    assert [(d.code, d.retry) for d in decisions] == [("timeout", True)] * timed_out
