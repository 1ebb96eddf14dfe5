"""Decides, per ``/v1`` call, whether to inject a fault.

Why: the app must survive rate limits, server errors, answers that arrive after the client
gave up, and answers that trickle in (each read is quick, the whole answer is not: per-read
timeouts never fire, only a total deadline on the client stops it). The draw uses the
simulator's seeded RNG so a failing scenario can be replayed with the same ``--seed``.
"""

from __future__ import annotations

import math
import random

from .config import SimConfig

FAULT_429 = "429"
FAULT_500 = "500"
FAULT_SLOW = "slow"
FAULT_TRICKLE = "trickle"


def roll(config: SimConfig, rng: random.Random, kind: str) -> str | None:
    """Return the fault to inject for a call of ``kind``, or ``None``."""
    if config.fault_only and kind not in config.fault_only:
        return None
    rates = (
        (FAULT_429, config.fault_429_rate),
        (FAULT_500, config.fault_500_rate),
        (FAULT_SLOW, config.fault_slow_rate),
        (FAULT_TRICKLE, config.fault_trickle_rate),
    )
    for name, rate in rates:
        if rate > 0 and rng.random() < rate:
            return name
    return None


def trickle_pieces(body: bytes, total_s: float, interval_s: float) -> list[bytes]:
    """Split ``body`` into the pieces a trickled answer sends, one per ``interval_s``.

    As many pieces as there are intervals in ``total_s`` (so the answer takes about
    ``total_s``), but never an empty one: a body shorter than that finishes sooner.
    """
    count = max(1, math.ceil(total_s / interval_s))
    size = max(1, math.ceil(len(body) / count))
    return [body[start : start + size] for start in range(0, len(body), size)] or [b""]
