"""Small statistics helpers: nearest-rank percentiles and peak rates. No dependencies."""

from __future__ import annotations

from collections.abc import Sequence


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
