"""PNG plots against N (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .scenario import label  # noqa: E402


def _series(
    scenarios: list[dict[str, Any]], value: Any
) -> dict[str, tuple[list[int], list[float]]]:
    """A line per row name (a strategy, and its queue topology and poll mode where not the
    defaults), in the order the rows ran."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for name in dict.fromkeys(label(s) for s in scenarios):
        points = sorted(
            (s["n"], value(s)) for s in scenarios if label(s) == name and value(s) is not None
        )
        if points:
            out[name] = ([p[0] for p in points], [p[1] for p in points])
    return out


def _axes(ax: Any, title: str, ylabel: str, logy: bool = False) -> None:
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("concurrent runs (N)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def write(directory: Path, scenarios: list[dict[str, Any]], prefix: str = "") -> list[str]:
    """calls per run, detection latency and slots against N; also a three-panel summary."""
    panels = [
        (
            "calls_per_run",
            "API calls per run",
            "calls",
            False,
            lambda s: s["calls_per_run"]["total"],
        ),
        (
            "latency",
            "Detection latency p99 (p50 dashed)",
            "ms",
            True,
            lambda s: s["detection_ms"]["p99"],
        ),
        ("slots", "Worker slots / threads held", "slots", True, lambda s: s["slots"]),
    ]
    names = []
    fig_all, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for (name, title, ylabel, logy, value), ax_all in zip(panels, axes, strict=True):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for target in (ax, ax_all):
            for row, (xs, ys) in _series(scenarios, value).items():
                line = target.plot(xs, ys, marker="o", label=row)[0]
                unfinished = [
                    (sc["n"], value(sc))
                    for sc in scenarios
                    if label(sc) == row and not sc.get("finished", True)
                ]
                for x, y in unfinished:  # a cross: not every run ended within the cap
                    target.plot(x, y, marker="x", markersize=12, color="black")
                if name == "latency":
                    p50 = _series(scenarios, lambda s: s["detection_ms"]["p50"]).get(row)
                    if p50:
                        target.plot(*p50, linestyle="--", color=line.get_color(), alpha=0.6)
            _axes(target, title, ylabel, logy)
        ax.legend(fontsize=8)
        fig.tight_layout()
        filename = f"{prefix}{name}.png"
        fig.savefig(directory / filename, dpi=110)
        plt.close(fig)
        names.append(filename)
    axes[0].legend(fontsize=8)
    fig_all.suptitle("x = not every run ended within the scenario's cap", fontsize=9, y=0.02)
    fig_all.tight_layout()
    summary = f"{prefix}summary.png"
    fig_all.savefig(directory / summary, dpi=100)
    plt.close(fig_all)
    return [summary, *names]
