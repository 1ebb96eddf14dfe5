"""How a chunked start (``starts``) splits its runs into waves: about ``RUNS_START_CONCURRENCY``
runs each, one thread's runs in order, and never so many of one thread in a wave that the wave
could outlast the start claims it holds.

Why the bound: a wave's runs of one thread are created one after another, after the thread's
conversation, and nothing of the wave is saved until its slowest thread is done; its claims are
renewed only just before it. Each create may take up to ``OPENAI_CREATE_TIMEOUT_S``, so a thread
with k runs in a wave may hold every claim of the wave for k + 1 creates. Past
``RUNS_CLAIM_TIMEOUT_S`` the sweep releases the claims, and a run created but not yet saved would
be created again. So a thread gives a wave at most ``per_thread()`` runs; the rest go to later
waves, still claimed by the chunk (their own ``start_run`` finds them taken, so they keep their
thread's order), their claims renewed before every wave (``starts.start_chunk``), since they
wait through all the waves before theirs. ``per_thread() + 1`` creates leave one create's time
for the writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ..conf import settings
from ..models import Run


def per_thread() -> int:
    """How many runs of one thread a wave may create (at least one): 2 with the defaults
    (claims of 120 s, creates of up to 30 s)."""
    claim_s = float(settings.RUNS_CLAIM_TIMEOUT_S)
    create_s = float(settings.OPENAI_CREATE_TIMEOUT_S)
    return max(1, int(claim_s // create_s) - 2) if create_s > 0 else 1


def waves(runs: Sequence[Run], size: int, per_thread: int) -> list[list[Run]]:
    """``runs`` in waves of about ``size``, so a create waits for its wave, not the whole chunk,
    before it is saved. A thread's runs go at most ``per_thread`` to a wave, each part in a
    later wave than the one before it, oldest first."""
    out: list[list[Run]] = []
    size, per_thread = max(1, size), max(1, per_thread)
    for group in by_thread(runs):
        after = 0  # the first wave the group's next part may join
        for at in range(0, len(group), per_thread):
            part = group[at : at + per_thread]
            if not out or len(out) - 1 < after or len(out[-1]) + len(part) > size:
                out.append([])
            out[-1].extend(part)
            after = len(out)
    return out


def by_thread(runs: Sequence[Run]) -> list[list[Run]]:
    """``runs`` grouped by thread, each group oldest first."""
    groups: dict[int, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.pk):
        groups[run.thread_id].append(run)
    return list(groups.values())
