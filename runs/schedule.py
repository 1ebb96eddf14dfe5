"""Backoff schedules as pure functions: when to look at a run again.

Nothing here sleeps or touches the database; tasks turn these numbers into Celery countdowns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .conf import settings


@dataclass(frozen=True)
class Schedule:
    """A capped exponential schedule: ``base * factor**attempt``, at most ``cap``, +-``jitter``."""

    base: float
    factor: float
    cap: float
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid schedule {self}")

    def nominal(self, attempt: int) -> float:
        """The delay before poll number ``attempt + 1``, without jitter."""
        # Stop multiplying once capped so large attempts cannot overflow.
        delay = self.base
        for _ in range(attempt):
            delay *= self.factor
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The nominal delay with jitter, so that runs started together do not poll in lockstep."""
        r = rng.random() if rng else random.random()
        return self.nominal(attempt) * (1 - self.jitter + 2 * self.jitter * r)

    def poll_times(self, horizon: float) -> list[float]:
        """Nominal times (from the first poll's scheduling) of every poll up to ``horizon``."""
        times, t, attempt = [], 0.0, 0
        while True:
            t += self.nominal(attempt)
            times.append(t)
            if t >= horizon:
                return times
            attempt += 1

    def predicted_polls(self, duration: float) -> int:
        """Retrieves needed to see a run that ends ``duration`` s after its first poll was armed."""
        return len(self.poll_times(duration))


#: The tutorial's schedule: 0.5 s, x1.5, capped at 5 s.
TUTORIAL = Schedule(base=0.5, factor=1.5, cap=5.0, jitter=0.1)
#: For webhook-tracked runs: a slow net that only matters when a webhook is lost.
SAFETY_NET = Schedule(base=30.0, factor=2.0, cap=300.0, jitter=0.1)

#: The server may tell us when to come back (``openai-poll-after-ms``); we honour it within bounds
#: so that a bogus header can neither make us hammer the API nor strand a run.
MIN_HINT_S = 0.1
MAX_HINT_S = 60.0


def next_delay(
    schedule: Schedule,
    attempt: int,
    *,
    poll_after_ms: int | None = None,
    remaining_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """The countdown before the next poll.

    ``poll_after_ms`` (the server's hint) wins over the schedule; ``remaining_s`` (time to the
    run's deadline) caps it so the deadline is acted on within a tick rather than a whole cap late.
    """
    if poll_after_ms is not None and poll_after_ms > 0:
        delay = min(max(poll_after_ms / 1000.0, MIN_HINT_S), MAX_HINT_S)
    else:
        delay = schedule.delay(attempt, rng)
    if remaining_s is not None:
        delay = min(delay, max(remaining_s, 0.0) + 0.05)
    return delay


def schedule_for(strategy: str) -> Schedule:
    """The schedule a run's strategy polls on, from settings: the fast schedule, or for webhook
    runs the slow safety net (a lost event delays such a run, never strands it)."""
    if strategy == "webhook":
        return Schedule(
            base=settings.RUNS_SAFETY_NET_BASE_S,
            factor=settings.RUNS_SAFETY_NET_FACTOR,
            cap=settings.RUNS_SAFETY_NET_CAP_S,
            jitter=settings.RUNS_POLL_JITTER,
        )
    return Schedule(
        base=settings.RUNS_POLL_BASE_S,
        factor=settings.RUNS_POLL_FACTOR,
        cap=settings.RUNS_POLL_CAP_S,
        jitter=settings.RUNS_POLL_JITTER,
    )
