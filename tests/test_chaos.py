"""Nothing lost, nothing doubled: a CI-sized chaos run (`manage.py chaos` is the full one).

Worker subprocesses are SIGKILLed over and over, the (private) Redis is flushed mid-run, 5 % of
API calls are answered 429, 500 or too late, and some runs make tool calls; every run must still
end terminal. A worker is killed only once it is ready and has made API calls since, at a random
moment and at most every two seconds, so each kill interrupts real work and the runs still
progress between kills.

The test asserts progress, not speed: the driver stops when every run is terminal, or when no run
has changed status for a minute ("stuck"); run deadlines are far beyond that, so a slow machine
cannot turn a run ``expired``.
"""

import pytest

from runs_dev.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.integration


#: A CI-sized run: 24 runs of about 2 s on one 4-slot worker killed every 2 s or so. A claim left
#: by a killed create is released 15 s later (create timeout + 5 s).
CI_SIZED = {
    "runs": 24,
    "kill_every_s": 2.0,
    "kill_after_calls": 3,
    "duration_median_s": 2.0,
    "duration_max_s": 6.0,
    "concurrency": 4,
    "create_timeout_s": 10.0,
    "run_deadline_s": 600.0,
    "stuck_after_s": 60.0,
    "timeout_s": 220.0,
}


def test_no_run_is_lost_under_kills_a_flush_and_api_faults(transactional_db):
    report = run_chaos(ChaosConfig(**CI_SIZED, tool_share=0.3))
    details = report.to_json()
    print(details)  # the figures of a passing run too: `pytest -rP` shows them
    assert report.ended == "all_terminal" and report.lost == 0, details
    assert report.expired == 0, details
    assert report.kills >= 2 and report.flushes == 1, details
    assert report.tool_runs == 7 and report.stuck_rounds == 0, details
    # Only a worker killed between a create's request and saving its answer can double a run, or
    # (a tool round's submit is a create too) answer a call twice.
    assert report.duplicate_creates <= 3, details
    assert report.tool_calls_answered_more_than_once <= 3, details


def test_chunked_starts_lose_nothing_under_kills_and_double_at_most_what_was_in_flight(
    transactional_db,
):
    """``RUNS_START_CHUNK`` on: a worker killed mid-wave repeats at most the creates it had in
    flight (``RUNS_START_CONCURRENCY`` per task), never loses a run or leaves one claimed."""
    report = run_chaos(ChaosConfig(**CI_SIZED, start_chunk=8, start_concurrency=2))
    details = report.to_json()
    print(details)
    assert report.ended == "all_terminal" and report.lost == 0, details
    assert report.expired == 0 and report.kills >= 2, details
    # Each kill interrupts at most its worker's slots, each at most one wave in flight.
    assert report.duplicate_creates <= report.kills * 4 * 2, details
