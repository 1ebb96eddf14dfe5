"""Decides, per ``/v1`` call, whether to inject a fault.

Why: the app must survive rate limits, server errors and answers that arrive after the
client gave up. The draw uses the simulator's seeded RNG so a failing scenario can be
replayed with the same ``--seed``.
"""

from __future__ import annotations

import random

from .config import SimConfig

FAULT_429 = "429"
FAULT_500 = "500"
FAULT_SLOW = "slow"


def roll(config: SimConfig, rng: random.Random, kind: str) -> str | None:
    """Return the fault to inject for a call of ``kind``, or ``None``."""
    if config.fault_only and kind not in config.fault_only:
        return None
    rates = (
        (FAULT_429, config.fault_429_rate),
        (FAULT_500, config.fault_500_rate),
        (FAULT_SLOW, config.fault_slow_rate),
    )
    for name, rate in rates:
        if rate > 0 and rng.random() < rate:
            return name
    return None
