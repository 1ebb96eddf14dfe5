"""The machine's load average beside each figure, and the flag for a row taken on a busy machine.

Why: the bench shares its cores with whatever else runs (other builds, other benches). A figure
measured while the 1-minute load average was above the core count was competing for CPU, so it
says less about the code; the report keeps the row but marks it (``⚠ load 3.1 > 2 cores``)
instead of silently mixing it with clean ones. Load is read at a scenario's start (what else the
machine was doing) and at its end (the scenario's own processes included); the flag uses the
higher of the two.
"""

from __future__ import annotations

import os
from typing import Any


def cores() -> int:
    """Logical cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load1() -> float | None:
    """The 1-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


class LoadWindow:
    """Load at the start and end of one measurement: ``start()`` then ``stop()``."""

    def __init__(self) -> None:
        self.start_load: float | None = None

    def start(self) -> LoadWindow:
        self.start_load = load1()
        return self

    def stop(self) -> dict[str, Any]:
        """``{"load1_start", "load1_end", "load1", "cores", "over"}`` for the JSON."""
        end = load1()
        seen = [v for v in (self.start_load, end) if v is not None]
        worst = max(seen) if seen else None
        n = cores()
        return {
            "load1_start": self.start_load,
            "load1_end": end,
            "load1": worst,
            "cores": n,
            "over": worst is not None and worst > n,
        }


def flag(load: dict[str, Any] | None) -> str:
    """``"⚠ load 3.1 > 2 cores"`` for a row taken above the core count, else ``""``."""
    if not load or not load.get("over"):
        return ""
    return f"⚠ load {load['load1']:.1f} > {load['cores']} cores"


def cell(load: dict[str, Any] | None) -> str:
    """The table cell: the load (start → end) and the flag when over the core count."""
    if not load or load.get("load1") is None:
        return "–"
    text = f"{_num(load.get('load1_start'))} → {_num(load.get('load1_end'))}"
    warn = flag(load)
    return f"{text} **{warn}**" if warn else text


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
