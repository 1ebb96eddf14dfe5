"""A pause after a failure, for the side channels on Redis (live status, the request budget).

Both go ahead without their Redis: a status message is only a nudge, and a call past the budget
meets the error policy's 429 handling. What they must not do is make every caller wait for the
Redis that failed: one that times out instead of refusing would cost each status change and each
API call its whole socket timeout, and at a few hundred a second that is every worker slot. After
a failure the channel is skipped for ``PAUSE_S``; the first call after the pause tries again.
"""

from __future__ import annotations

import time

#: How long a side channel is skipped after its Redis failed.
PAUSE_S = 5.0


class Breaker:
    """Open for ``PAUSE_S`` after ``trip()``; callers skip the channel while ``is_open()``."""

    def __init__(self) -> None:
        self._until = 0.0

    def is_open(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        self._until = time.monotonic() + PAUSE_S

    def reset(self) -> None:
        self._until = 0.0
