"""The poll schedule is a pure function: 0.5 s, x1.5, capped at 5 s, +-10 % jitter."""

import random

import pytest

from runs.schedule import MAX_HINT_S, MIN_HINT_S, SAFETY_NET, TUTORIAL, Schedule, next_delay


def test_tutorial_schedule_grows_by_half_and_caps_at_five_seconds():
    assert [round(TUTORIAL.nominal(a), 4) for a in range(8)] == [
        0.5,
        0.75,
        1.125,
        1.6875,
        2.5312,
        3.7969,
        5.0,
        5.0,
    ]


def test_huge_attempt_numbers_stay_capped():
    assert TUTORIAL.nominal(10_000) == 5.0


def test_jitter_stays_within_ten_percent():
    rng = random.Random(7)
    for attempt in range(10):
        nominal = TUTORIAL.nominal(attempt)
        for _ in range(200):
            assert 0.9 * nominal <= TUTORIAL.delay(attempt, rng) <= 1.1 * nominal


def test_jitter_spreads_runs_started_together():
    rng = random.Random(1)
    assert len({round(TUTORIAL.delay(3, rng), 6) for _ in range(50)}) > 40


def test_safety_net_starts_late_and_doubles():
    assert [SAFETY_NET.nominal(a) for a in range(5)] == [30, 60, 120, 240, 300]


def test_server_hint_wins_over_the_schedule_within_bounds():
    assert next_delay(TUTORIAL, 0, poll_after_ms=2000) == 2.0
    assert next_delay(TUTORIAL, 0, poll_after_ms=1) == MIN_HINT_S
    assert next_delay(TUTORIAL, 0, poll_after_ms=10**9) == MAX_HINT_S


def test_deadline_caps_the_countdown():
    assert next_delay(TUTORIAL, 6, remaining_s=1.0) == pytest.approx(1.05)
    assert next_delay(TUTORIAL, 6, remaining_s=-3.0) == pytest.approx(0.05)


def test_predicted_polls_counts_the_retrieves_to_see_the_end():
    # Poll times: 0.5, 1.25, 2.375, 4.0625, 6.59, 10.39, 15.39 ...
    assert TUTORIAL.predicted_polls(0.3) == 1
    assert TUTORIAL.predicted_polls(2.0) == 3
    assert TUTORIAL.predicted_polls(10.0) == 6
    assert TUTORIAL.predicted_polls(20.0) == 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": 0, "factor": 1.5, "cap": 5},
        {"base": 1, "factor": 0.5, "cap": 5},
        {"base": 1, "factor": 2, "cap": 0.5},
        {"base": 1, "factor": 2, "cap": 5, "jitter": 1.0},
    ],
)
def test_nonsense_schedules_are_refused(kwargs):
    with pytest.raises(ValueError):
        Schedule(**kwargs)
