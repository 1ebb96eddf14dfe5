"""Small statistics helpers: nearest-rank percentiles and peak rates. No dependencies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def summarize(
    values: Sequence[float], scale: float = 1.0, digits: int = 1
) -> dict[str, float | None]:
    """p50/p99/max/mean of ``values`` times ``scale`` (e.g. 1000 for ms), rounded."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v * scale, digits)

    return {
        "count": len(values),
        "p50": r(percentile(values, 50)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values) if values else None),
        "mean": r(sum(values) / len(values) if values else None),
    }


def peak_rate(samples: Sequence[tuple[float, float]], window_s: float = 1.0) -> float:
    """The highest rate of a cumulative counter over any window of at least ``window_s``.

    ``samples`` are (time, cumulative count) pairs in time order.
    """
    best, j = 0.0, 0
    for i in range(len(samples)):
        t_i, c_i = samples[i]
        while j < i and t_i - samples[j + 1][0] >= window_s:
            j += 1
        t_j, c_j = samples[j]
        if t_i - t_j >= window_s:
            best = max(best, (c_i - c_j) / (t_i - t_j))
    return round(best, 1)


def median_pair(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The pair (a measurement and its baseline, taken back to back) with the median ``ratio``;
    of an even count, the lower of the middle two; a pair with no ratio ranks lowest.

    Why pairs and not the median of each side: on a shared host the load drifts between
    invocations, and a ratio taken back to back cancels most of it; the median of paired ratios
    holds still where one pair cannot (docs/bench/README.md, the tick rate's method).
    """
    ranked = sorted(pairs, key=lambda p: p["ratio"] if p["ratio"] is not None else -1.0)
    return ranked[(len(ranked) - 1) // 2]


def reported_pair(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The row's pair with the median ratio (``median_pair``), with every pair's ratio in
    measuring order as ``pair_ratios`` and the others as ``other_pairs``."""
    median = median_pair(pairs)
    return median | {
        "pair_ratios": [p["ratio"] for p in pairs],
        "other_pairs": [p for p in pairs if p is not median],
    }


def ratios_text(ratios: Sequence[float | None]) -> str:
    """Paired ratios as a report lists them: "0.56x, 0.57x, –" (– where a pair had none)."""
    return ", ".join("–" if r is None else f"{r:.2f}x" for r in ratios)
