"""Background samplers: the worker processes' CPU/RSS/threads, and the simulator's pace.

Why sample rather than read once: peak RSS and peak threads only exist while the scenario runs,
and a process's CPU time is gone once it exits, so the last sample is taken just before we stop
it. The simulator sampler records the cumulative call count (for API calls/s at peak) and times a
``/_sim/health`` round trip (the simulator's own ``latency`` section only covers handler time, not
time spent waiting for its event loop, which is where an overloaded simulator shows).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import psutil

from .stats import peak_rate, summarize


@dataclass
class ProcUsage:
    """What one group of processes (e.g. "worker") used."""

    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_threads: int = 0


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds so far of the processes ``pids`` and their children; a process
    gone meanwhile counts for nothing. For a before/after difference around a measured window."""
    total = 0.0
    for pid in pids:
        try:
            for p in _tree(psutil.Process(pid)):
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


class ProcessSampler:
    """Samples named groups of pids (and their children) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.groups: dict[str, list[psutil.Process]] = {}
        self.usage: dict[str, ProcUsage] = {}
        self._cpu: dict[tuple[str, int], float] = {}
        self._base: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="bench-proc-sampler", daemon=True)

    def watch(self, group: str, pid: int) -> None:
        with self._lock:
            self.groups.setdefault(group, []).append(psutil.Process(pid))
            self.usage.setdefault(group, ProcUsage())

    def start(self) -> ProcessSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        """One sample of every group (also called right before stopping a process)."""
        with self._lock:
            for group, roots in self.groups.items():
                rss = threads = 0
                for root in roots:
                    for proc in _tree(root):
                        try:
                            with proc.oneshot():
                                times = proc.cpu_times()
                                rss += proc.memory_info().rss
                                threads += proc.num_threads()
                            self._cpu[(group, proc.pid)] = times.user + times.system
                        except psutil.Error:
                            continue
                usage = self.usage[group]
                usage.peak_rss_mb = max(usage.peak_rss_mb, rss / 2**20)
                usage.peak_threads = max(usage.peak_threads, threads)
                usage.cpu_s = sum(
                    v - self._base.get((g, pid), 0.0)
                    for (g, pid), v in self._cpu.items()
                    if g == group
                )

    def baseline(self) -> None:
        """Count CPU from now on: process start-up (imports, Django set-up) is not the work."""
        self.sample()
        with self._lock:
            self._base = dict(self._cpu)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, dict[str, float]]:
        self.sample()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return {
            g: {
                "cpu_s": round(u.cpu_s, 2),
                "peak_rss_mb": round(u.peak_rss_mb, 1),
                "peak_threads": u.peak_threads,
            }
            for g, u in self.usage.items()
        }


@dataclass
class SimPace:
    """Cumulative API calls over time and health-probe round trips."""

    calls: list[tuple[float, float]] = field(default_factory=list)
    probe_s: list[float] = field(default_factory=list)


class SimSampler:
    """Polls ``/_sim/stats?objects=0`` and times ``/_sim/health`` (bounded by ``stop()``)."""

    def __init__(self, url: str, interval: float = 0.5) -> None:
        self.url = url
        self.interval = interval
        self.pace = SimPace()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sim-sampler", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> SimSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return answer.read()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                started = time.perf_counter()
                self._get("/_sim/health")
                self.pace.probe_s.append(time.perf_counter() - started)
                stats = json.loads(self._get("/_sim/stats?objects=0"))
                self.pace.calls.append(
                    (time.monotonic() - self._t0, float(sum(stats.get("calls", {}).values())))
                )
            except OSError:
                continue

    def stop(self) -> dict[str, object]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        return {
            "peak_calls_per_s": peak_rate(self.pace.calls, 1.0),
            "probe_rtt_ms": summarize(self.pace.probe_s, 1000.0, 1),
            "calls_timeline": [(round(t, 2), int(c)) for t, c in self.pace.calls],
        }
