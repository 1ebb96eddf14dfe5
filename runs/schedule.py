"""Backoff schedules as pure functions: when to look at a run again, and why (``describe``).

Nothing here sleeps or touches the database; tasks turn these numbers into Celery countdowns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .conf import settings
from .options import window_s
from .poll_modes import found_by_batch
from .status import TERMINAL, RunStatus

if TYPE_CHECKING:
    from .models import Run


@dataclass(frozen=True)
class Schedule:
    """A capped exponential schedule: ``base * factor**attempt``, at most ``cap``, +-``jitter``."""

    base: float
    factor: float
    cap: float
    jitter: float = 0.1
    #: The server's poll hint may only delay a poll, never bring it forward: a window's schedule
    #: is a promise about how many retrieves a run costs (``schedule_for``).
    hint_is_floor: bool = False

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
        if schedule.hint_is_floor:
            delay = max(delay, schedule.delay(attempt, rng))
    else:
        delay = schedule.delay(attempt, rng)
    if remaining_s is not None:
        delay = min(delay, max(remaining_s, 0.0) + 0.05)
    return delay


def schedule_for(strategy: str, window: str = "soonest") -> Schedule:
    """The schedule a run polls on, from settings: its strategy's, or its window's.

    Without a window: the fast schedule, or for webhook runs the slow safety net (a lost event
    delays such a run, never strands it). A 2h/8h window (scaled by ``RUNS_TIME_SCALE``) is a
    promise that the answer takes a while, so polling every few seconds would only cost calls:

    - by polling, every ``window / RUNS_WINDOW_MAX_POLLS``: at most that many retrieves over
      the window (per response: each tool round on Responses is a new one), the last at its end;
    - by webhook, the safety net looks once, at the window's end: the webhook's one retrieve
      is the run's only one, and a lost event is caught there, at the cost of that one look.

    No jitter here: jitter would let the poll at the window's end slip past the deadline (the
    window plus ``RUNS_WINDOW_GRACE_S``), and a tick past the deadline expires the run without
    looking. Runs in a window are spread by their own start times. A window's wait may be hours:
    the writer reaches it by hops (``RUNS_MAX_COUNTDOWN_S``).
    """
    jitter = settings.RUNS_POLL_JITTER
    length = window_s(window)
    if length is not None:
        polls = 1 if strategy == "webhook" else max(int(settings.RUNS_WINDOW_MAX_POLLS), 1)
        step = length / polls
        return Schedule(base=step, factor=1.0, cap=step, jitter=0.0, hint_is_floor=True)
    if strategy == "webhook":
        return Schedule(
            base=settings.RUNS_SAFETY_NET_BASE_S,
            factor=settings.RUNS_SAFETY_NET_FACTOR,
            cap=settings.RUNS_SAFETY_NET_CAP_S,
            jitter=jitter,
        )
    return Schedule(
        base=settings.RUNS_POLL_BASE_S,
        factor=settings.RUNS_POLL_FACTOR,
        cap=settings.RUNS_POLL_CAP_S,
        jitter=jitter,
    )


def describe(run: Run, now: datetime | None = None) -> str:
    """When the run's next poll is due and why, in words (the admin's run page).

    Computed from the run as stored: its status, strategy, window, due time and deadline. The
    server's ``openai-poll-after-ms`` hint is not stored, so a due time it moved is described
    by the schedule it replaced.
    """
    if run.status in TERMINAL:
        return "no more polls: the run has ended"
    if not run.remote_id or run.next_poll_at is None:
        return "not started: the create arms the first poll"
    now = now or datetime.now(UTC)
    left = (run.next_poll_at - now).total_seconds()
    when = "due now" if left <= 0 else f"in {human_s(left)}"
    if found_by_batch(run):
        return f"{when}: {_why(run)}; found by runs.poll_due"
    hops = left > float(settings.RUNS_MAX_COUNTDOWN_S)
    return f"{when}: {_why(run)}" + ("; reached by hops (RUNS_MAX_COUNTDOWN_S)" if hops else "")


def _why(run: Run) -> str:
    if run.deadline_at is not None and run.next_poll_at >= run.deadline_at:
        return "the deadline: that poll expires the run unless it has ended"
    if run.status == RunStatus.REQUIRES_ACTION:
        return "waiting for tool outputs: a check on the round (its tools, or a manual output)"
    window = run.completion_window
    schedule = schedule_for(run.strategy, window)
    if window_s(window) is not None and run.strategy == "webhook":
        return (
            f"safety net of the {window} window: the webhook ends the run; one poll at the "
            "window's end only in case it is lost"
        )
    if window_s(window) is not None:
        limit = settings.RUNS_WINDOW_MAX_POLLS
        return f"window {window}: every {human_s(schedule.base)}, at most {limit} polls"
    shape = f"{schedule.base:g} s x{schedule.factor:g} up to {schedule.cap:g} s"
    if run.strategy == "webhook":
        return f"safety net ({shape}): the webhook ends the run"
    return f"poll schedule ({shape}), poll {run.poll_attempt + 1}"


def human_s(seconds: float) -> str:
    """A duration for people: ``1.5 s``, ``24 min``, ``2 h 5 min``."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"
