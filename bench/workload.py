"""The one workload every strategy runs: N runs, log-normal or uniform durations, some failures.

Per-run behaviour is fixed by the simulator's metadata knobs (``sim_duration_s``,
``sim_outcome``, ``sim_tool_rounds``), so every strategy faces exactly the same runs and the
ratios compare the strategies, not luck. Seeded: the same N and seed give the same runs.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

#: The tool a tool-calling run asks for (``runs_dev.example_tools``).
TOOL_NAME = "add"
#: Remote outcomes besides ``completed`` and their shares ("some failures").
FAILURE_SHARES = {"failed": 0.04, "incomplete": 0.03, "cancelled": 0.03}
DURATIONS = ("lognormal", "uniform")


@dataclass(frozen=True)
class Shape:
    """The duration distribution: log-normal around a median, clipped; or uniform in
    [min_s, max_s] (issue 13's workload, "runs of 5-20 s"), where the median and sigma are unused.
    """

    median_s: float = 8.0
    sigma: float = 0.4
    min_s: float = 1.0
    max_s: float = 40.0
    tool_share: float = 0.0
    durations: str = "lognormal"

    def __post_init__(self) -> None:
        if self.durations not in DURATIONS:
            raise ValueError(f"durations must be one of {DURATIONS}, not {self.durations!r}")
        if self.min_s > self.max_s:
            raise ValueError(f"min_s ({self.min_s}) is above max_s ({self.max_s})")

    def draw(self, rng: random.Random) -> float:
        if self.durations == "uniform":
            return rng.uniform(self.min_s, self.max_s)
        duration = math.exp(rng.gauss(math.log(self.median_s), self.sigma))
        return min(max(duration, self.min_s), self.max_s)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """One run of the workload."""

    index: int
    duration_s: float
    outcome: str
    tool_rounds: int = 0

    def metadata(self) -> dict[str, str]:
        """The simulator knobs, as the string metadata OpenAI requires.

        A run with tool rounds asks for the project's example tool ``add`` (registered out of the
        box), so every strategy answers the same call.
        """
        meta = {"sim_duration_s": f"{self.duration_s:.2f}", "sim_outcome": self.outcome}
        if self.tool_rounds:
            meta.update(
                sim_tool_rounds=str(self.tool_rounds),
                sim_tool_name=TOOL_NAME,
                sim_tool_args='{"a": 2, "b": 3}',
            )
        return meta


def make_workload(n: int, seed: int, shape: Shape) -> list[Plan]:
    """``n`` plans: durations drawn by ``shape``, outcomes by share."""
    if n < 1:
        raise ValueError("a workload needs at least one run")
    rng = random.Random(seed)
    plans: list[Plan] = []
    for i in range(n):
        duration = shape.draw(rng)
        draw, outcome = rng.random(), "completed"
        for name, share in FAILURE_SHARES.items():
            if draw < share:
                outcome = name
                break
            draw -= share
        tools = 1 if outcome == "completed" and rng.random() < shape.tool_share else 0
        plans.append(Plan(i, round(duration, 2), outcome, tools))
    return plans


def summary(plans: list[Plan]) -> dict[str, float | int | dict[str, int]]:
    """What the workload was, for the report."""
    durations = sorted(p.duration_s for p in plans)
    outcomes: dict[str, int] = {}
    for p in plans:
        outcomes[p.outcome] = outcomes.get(p.outcome, 0) + 1
    return {
        "n": len(plans),
        "median_s": durations[len(durations) // 2],
        "longest_s": durations[-1],
        "outcomes": outcomes,
        "with_tool_calls": sum(1 for p in plans if p.tool_rounds),
    }


def ended_floor(plans: list[Plan], starts_per_s: float) -> float:
    """When the last run would end, as a multiple of the longest run, had the runs been created
    in order at ``starts_per_s`` and each noticed the moment it ended.

    Why: "all ended in 1.2x the longest run" depends on how fast the runs can be created at all;
    at the bare SDK loop's rate (the fastest this machine creates them, nothing tracked) this is
    the best any tracker could do on it.
    """
    ends = (i / starts_per_s + p.duration_s for i, p in enumerate(plans))
    return max(ends) / max(p.duration_s for p in plans)
