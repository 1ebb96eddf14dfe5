"""Nothing lost, nothing doubled: a CI-sized chaos run (`manage.py chaos` is the full one).

Worker subprocesses SIGKILLed every two seconds, the (private) Redis flushed mid-run, 5 % of API
calls answered 429, 500 or too late; every run must still end terminal.
"""

import pytest

from runs.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.integration


def test_no_run_is_lost_under_kills_a_flush_and_api_faults(transactional_db):
    report = run_chaos(
        ChaosConfig(
            runs=24,
            kill_every_s=2.0,
            duration_median_s=2.0,
            duration_max_s=6.0,
            concurrency=4,
            timeout_s=150.0,
        )
    )
    assert report.lost == 0, report.to_json()
    assert report.kills >= 2 and report.flushes == 1
    # Only a worker killed between a create's request and saving its answer can double a run.
    assert report.duplicate_creates <= 3, report.to_json()
