"""How a chunk of starts is cut into waves (``starts.start_chunk``), and how many of one
thread's runs it may take at all.

Why apart: the plan is pure (which runs, in which order and groups), the creates and writes
are ``starts``'s; and the claim arithmetic below is easier to read, and test, on its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ..conf import settings
from ..models import Run


def per_thread_limit() -> int:
    """How many of one thread's runs one chunk creates. A thread's runs are created one after
    another in one wave (a conversation takes its turns in order), after its conversation, and
    the wave is written once its slowest group is done: all of them must fit in the start claim
    (``RUNS_CLAIM_TIMEOUT_S``), or the sweep would release the claims of runs created but not
    yet saved and start them again, a second response each. With the defaults, (120 - 10) // 30
    = 3."""
    spare = float(settings.RUNS_CLAIM_TIMEOUT_S) - float(settings.OPENAI_TIMEOUT_S)
    return max(1, int(spare // float(settings.OPENAI_CREATE_TIMEOUT_S)))


def fit_claim(runs: Sequence[Run]) -> tuple[list[Run], list[int]]:
    """(the runs to create, the ids over ``per_thread_limit`` for their thread, its latest)."""
    limit = per_thread_limit()
    keep: list[Run] = []
    beyond: list[int] = []
    for group in by_thread(runs):
        keep += group[:limit]
        beyond += [run.pk for run in group[limit:]]
    return sorted(keep, key=lambda r: r.pk), beyond


def waves(runs: Sequence[Run], size: int) -> list[list[Run]]:
    """``runs`` in waves of about ``size``, so a create waits for its wave, not the whole chunk,
    before it is saved; a thread's runs stay in one wave (its conversation is created once)."""
    out: list[list[Run]] = [[]]
    for group in by_thread(runs):
        if out[-1] and len(out[-1]) + len(group) > max(1, size):
            out.append([])
        out[-1].extend(group)
    return [wave for wave in out if wave]


def by_thread(runs: Sequence[Run]) -> list[list[Run]]:
    """``runs`` grouped by thread, each group oldest first."""
    by_thread: dict[int, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.pk):
        by_thread[run.thread_id].append(run)
    return list(by_thread.values())
