"""When an object reaches which status, decided once at creation.

Why: the simulator never runs a background loop over objects. Each object gets a fixed
timeline (queue time, total duration, outcome) when it is created, and its status is a
pure function of the clock, computed lazily on each read. That keeps 10,000+ live objects
free and makes tests deterministic (metadata pins the timeline).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from .config import SimConfig
from .errors import bad_request

TERMINAL_RESPONSE = frozenset({"completed", "failed", "incomplete", "cancelled"})


@dataclass(frozen=True)
class Timeline:
    """A response's planned life: queued, then in progress, then ``outcome``."""

    created: float
    queue_s: float
    duration_s: float
    outcome: str

    @property
    def terminal_at(self) -> float:
        """Epoch seconds at which the outcome becomes visible."""
        return self.created + self.duration_s

    def status_at(self, now: float) -> str:
        """Status at ``now`` (without client cancellation, which the record layers on)."""
        if now >= self.terminal_at:
            return self.outcome
        if now < self.created + self.queue_s:
            return "queued"
        return "in_progress"


def meta_float(metadata: Mapping[str, str], key: str) -> float | None:
    """Read a float knob from metadata (values are strings in the API); 400 if malformed."""
    raw = metadata.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise bad_request(
            f"Invalid metadata value for '{key}': {raw!r}", f"metadata.{key}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise bad_request(f"Invalid metadata value for '{key}': {raw!r}", f"metadata.{key}")
    return value


def meta_int(metadata: Mapping[str, str], key: str, default: int = 0) -> int:
    """Read a non-negative int knob from metadata; 400 if malformed."""
    value = meta_float(metadata, key)
    return default if value is None else int(value)


def sample_duration(config: SimConfig, rng: random.Random) -> float:
    """Log-normal duration around the configured median, clipped to the configured range."""
    value = rng.lognormvariate(math.log(config.duration_median_s), config.duration_sigma)
    return min(config.duration_max_s, max(config.duration_min_s, value))


def sample_outcome(config: SimConfig, rng: random.Random, allowed: tuple[str, ...]) -> str:
    """Draw an outcome from the configured weights."""
    names = [name for name in config.outcome_weights if name in allowed]
    weights = [config.outcome_weights[name] for name in names]
    if not names or sum(weights) <= 0:
        return "completed"
    return rng.choices(names, weights=weights, k=1)[0]


def plan(
    metadata: Mapping[str, str],
    config: SimConfig,
    rng: random.Random,
    now: float,
    *,
    allowed_outcomes: tuple[str, ...],
    instant: bool = False,
    window_s: float | None = None,
    slowdown: float = 1.0,
) -> Timeline:
    """Build the timeline from ``sim_*`` metadata, falling back to the scenario defaults.

    ``window_s`` (a 2h/8h window, unscaled): the response ends at a uniform point of the
    configured fraction of the window, scaled by ``time_scale``, and waits ``queued`` for the
    first half of that. ``slowdown`` (flex processing) stretches a sampled duration. Pins are
    exact: ``sim_duration_s``/``sim_queue_s`` are never scaled or stretched.
    """
    outcome = metadata.get("sim_outcome") or sample_outcome(config, rng, allowed_outcomes)
    if outcome not in allowed_outcomes:
        raise bad_request(
            f"Invalid metadata value for 'sim_outcome': {outcome!r}; expected one of "
            f"{', '.join(allowed_outcomes)}",
            "metadata.sim_outcome",
        )
    if instant:
        return Timeline(created=now, queue_s=0.0, duration_s=0.0, outcome=outcome)
    duration = meta_float(metadata, "sim_duration_s")
    if duration is None and window_s is not None:
        fraction = rng.uniform(config.window_fraction_min, config.window_fraction_max)
        duration = fraction * window_s * config.time_scale
    elif duration is None:
        duration = sample_duration(config, rng) * slowdown
    queue = meta_float(metadata, "sim_queue_s")
    if queue is None:
        queue = duration / 2 if window_s is not None else config.queue_s
    return Timeline(created=now, queue_s=min(queue, duration), duration_s=duration, outcome=outcome)
