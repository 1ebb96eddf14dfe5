"""Runtime configuration: scenario defaults, faults and webhook delivery settings.

Why one mutable object: the CLI sets the starting values, ``POST /_sim/config`` changes
them while the server runs (a test turns faults on and off), and ``POST /_sim/reset``
restores the starting values. Every key is typed and validated so a typo in a test fails
loudly instead of silently doing nothing.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

RESPONSE_OUTCOMES = ("completed", "failed", "incomplete", "cancelled")
#: What ``batch_force`` may force a new batch to end as (``None``: its natural course).
BATCH_FORCES = ("expired", "failed")


def _default_weights() -> dict[str, float]:
    return {"completed": 0.90, "failed": 0.04, "incomplete": 0.04, "cancelled": 0.02}


@dataclass
class SimConfig:
    """All tunables. Field names are the keys accepted by ``/_sim/config``."""

    # Scenario defaults (used when a request's metadata does not pin them).
    queue_s: float = 0.2
    duration_median_s: float = 3.0
    duration_sigma: float = 0.6
    duration_min_s: float = 0.5
    duration_max_s: float = 30.0
    outcome_weights: dict[str, float] = field(default_factory=_default_weights)
    # Assistants runs.
    run_expires_s: float = 600.0
    submit_lag_s: float = 0.5
    run_cancel_lag_s: float = 0.3
    # Polling hint header on GETs of non-terminal objects (None = not sent).
    poll_after_ms: int | None = None
    # API faults (``/v1`` only).
    fault_429_rate: float = 0.0
    fault_500_rate: float = 0.0
    fault_slow_rate: float = 0.0
    slow_s: float = 5.0
    # Trickle: headers at once, then the body in small pieces ``trickle_interval_s`` apart over
    # ``trickle_s`` seconds, so no single read waits long but the whole answer takes long.
    fault_trickle_rate: float = 0.0
    trickle_s: float = 10.0
    trickle_interval_s: float = 0.5
    retry_after_ms: int = 1000
    # Added to every ``/v1`` answer (not a fault, not counted): a network and server round trip,
    # so a client with N slots is bound by its slots (the scale-out bench sets 0.05-0.2 s).
    latency_s: float = 0.0
    fault_only: list[str] = field(default_factory=list)
    # Webhooks.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_delay_s: float = 0.05
    webhook_duplicate_rate: float = 0.0
    webhook_drop_rate: float = 0.0
    webhook_reorder: float = 0.0
    webhook_retry_base_s: float = 0.5
    webhook_retry_factor: float = 2.0
    webhook_max_attempts: int = 5
    webhook_timeout_s: float = 5.0
    # Stats.
    latency_window: int = 2000
    # Time scale: multiplies every window-derived wait (a 2h/8h background window, a batch's 24 h
    # expiry), so an 8h window is tested in seconds. ``RUNS_TIME_SCALE`` sets it at start-up: the
    # app reads the same variable, so one value drives both clocks.
    time_scale: float = 1.0
    # A 2h/8h response ends at uniform(min, max) * window * time_scale (unless metadata pins it).
    window_fraction_min: float = 0.05
    window_fraction_max: float = 0.6
    # Flex processing: a sampled duration (not a pinned one) is this many times longer.
    flex_slowdown: float = 2.0
    # Batches: seconds in ``validating``, processing lines, and ``finalizing`` (not scaled: a
    # batch of runs completes quickly in the simulator unless a test asks otherwise).
    batch_validating_s: float = 0.3
    batch_duration_s: float = 2.0
    batch_finalizing_s: float = 0.3
    batch_cancel_lag_s: float = 0.3
    # Share of batch lines that fail (drawn from a hash of the custom_id: predictable per line).
    batch_line_failure_rate: float = 0.0
    # Force new batches to end ``expired`` or ``failed`` (None: their natural course).
    batch_force: str | None = None

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` after validating every key and value (all or nothing)."""
        known = {f.name: f for f in fields(self)}
        staged = copy.deepcopy(self)
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown config key {key!r}")
            setattr(staged, key, _coerce(key, value))
        staged.validate()
        for key in changes:
            setattr(self, key, getattr(staged, key))

    def validate(self) -> None:
        """Reject values that would make the simulator misbehave."""
        for name in (
            "fault_429_rate",
            "fault_500_rate",
            "fault_slow_rate",
            "fault_trickle_rate",
            "webhook_duplicate_rate",
            "webhook_drop_rate",
            "batch_line_failure_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if not 0.0 <= self.latency_s <= 60.0:
            raise ValueError("latency_s must be within [0, 60]")
        if self.trickle_interval_s <= 0 or self.trickle_s < 0:
            raise ValueError("trickle_interval_s must be > 0 and trickle_s >= 0")
        if self.duration_min_s > self.duration_max_s:
            raise ValueError("duration_min_s must not exceed duration_max_s")
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts must be >= 1")
        if not 0.0 < self.time_scale <= 1000.0:
            raise ValueError("time_scale must be within (0, 1000]")
        if not 0.0 <= self.window_fraction_min <= self.window_fraction_max <= 1.0:
            raise ValueError("window fractions must satisfy 0 <= min <= max <= 1")
        if self.flex_slowdown < 1.0:
            raise ValueError("flex_slowdown must be >= 1")
        if not (math.isfinite(self.run_expires_s) and self.run_expires_s > 0):
            raise ValueError("run_expires_s must be a number > 0")
        if self.poll_after_ms is not None and self.poll_after_ms < 1:
            raise ValueError("poll_after_ms must be null or >= 1")
        for name in (
            "batch_validating_s",
            "batch_duration_s",
            "batch_finalizing_s",
            "batch_cancel_lag_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.batch_force is not None and self.batch_force not in BATCH_FORCES:
            raise ValueError(f"batch_force must be null or one of {BATCH_FORCES}")
        unknown = set(self.outcome_weights) - set(RESPONSE_OUTCOMES)
        if unknown or sum(self.outcome_weights.values()) <= 0:
            raise ValueError(f"outcome_weights keys must be among {RESPONSE_OUTCOMES}")

    def public(self) -> dict[str, Any]:
        """The config as JSON, with the webhook secret masked (it is never echoed)."""
        data = asdict(self)
        if data["webhook_secret"]:
            data["webhook_secret"] = "***"
        return data

    def copy(self) -> SimConfig:
        """A deep copy (the startup snapshot that reset restores)."""
        return copy.deepcopy(self)


_INT_KEYS = {"retry_after_ms", "webhook_max_attempts", "latency_window"}
_OPTIONAL_STR_KEYS = {"webhook_url", "webhook_secret", "batch_force"}


def _coerce(key: str, value: Any) -> Any:
    """Convert a JSON value to the field's type, raising ``ValueError`` when impossible."""
    if key in _OPTIONAL_STR_KEYS:
        return None if value in (None, "") else str(value)
    if key == "poll_after_ms":
        return None if value in (None, "", 0) else int(value)
    if key in _INT_KEYS:
        return int(value)
    if key == "outcome_weights":
        if not isinstance(value, dict):
            raise ValueError("outcome_weights must be an object")
        return {str(k): float(v) for k, v in value.items()}
    if key == "fault_only":
        if not isinstance(value, list):
            raise ValueError("fault_only must be a list of call kinds")
        return [str(v) for v in value]
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a number")
    return float(value)


def from_env(config: SimConfig, environ: dict[str, str] | None = None) -> None:
    """Read ``SIM_WEBHOOK_URL`` / ``SIM_WEBHOOK_SECRET`` / ``RUNS_TIME_SCALE`` (CLI flags
    override them later). A malformed ``RUNS_TIME_SCALE`` is a ``ValueError`` naming it."""
    env = os.environ if environ is None else environ
    if env.get("SIM_WEBHOOK_URL"):
        config.webhook_url = env["SIM_WEBHOOK_URL"]
    if env.get("SIM_WEBHOOK_SECRET"):
        config.webhook_secret = env["SIM_WEBHOOK_SECRET"]
    if env.get("RUNS_TIME_SCALE"):
        try:
            config.time_scale = float(env["RUNS_TIME_SCALE"])
        except ValueError:
            raw = env["RUNS_TIME_SCALE"]
            raise ValueError(f"RUNS_TIME_SCALE must be a number, got {raw!r}") from None
