"""The beat schedule the app offers: the recovery sweep, without a line in the host's settings.

``RunsConfig.ready`` calls ``offer_schedule(current_app)``. Under ``celery -A host beat`` Django
is set up inside beat's loader initialisation (Celery's Django fix-up, on ``import_modules``),
before beat builds its scheduler, which is when ``beat_schedule`` is read (``Scheduler.
setup_schedule``). Celery's ``beat_init`` signal would be too late: ``Service.start`` builds the
scheduler before it sends that signal. Web processes and workers get the entry too; only beat
reads it.

The entry is named ``runs-sweep`` and never replaces one of that name: a host that defines its own
``runs-sweep`` in ``CELERY_BEAT_SCHEDULE`` keeps it, and ``RUNS_BEAT_SCHEDULE = False`` adds
nothing (for a host that schedules ``runs.sweep`` some other way, e.g. django-celery-beat rows).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from .conf import settings
from .engine import batch_poll
from .poll_modes import due_strategies

#: The name of the entry in ``beat_schedule``; a host overrides it by defining the same name.
SWEEP_ENTRY = "runs-sweep"
#: When some runs are polled by due time (``RUNS_POLL_MODE`` or ``RUNS_SAFETY_NET_MODE`` is
#: "batched" or "auto", the latter "batched" by default): ``runs.poll_due`` every
#: ``RUNS_POLL_DUE_INTERVAL_S``.
POLL_DUE_ENTRY = "runs-poll-due"


#: The least a sweep may wait in the queue before it is dropped. ``expires`` is a moment on
#: beat's clock that each worker compares with its own: with a window of one short interval, a
#: worker a few seconds ahead would drop every sweep, and with it every path of recovery.
SWEEP_MIN_EXPIRES_S = 30.0


def sweep_entry() -> dict[str, Any]:
    """The sweep every ``RUNS_SWEEP_INTERVAL_S``; one not started within two intervals (and
    ``SWEEP_MIN_EXPIRES_S``) is dropped, so a beat that outpaces the workers piles up a few
    sweeps at most (each finds what the one before left)."""
    interval = float(settings.RUNS_SWEEP_INTERVAL_S)
    expires = max(2 * interval, SWEEP_MIN_EXPIRES_S)
    return {"task": "runs.sweep", "schedule": interval, "options": {"expires": expires}}


def _add_entries(app: Celery) -> None:
    """A new dict, the host's entries winning: the host's settings object is never mutated."""
    ours = {SWEEP_ENTRY: sweep_entry()}
    if due_strategies():  # some runs are polled by due time: batched polling's tick
        ours[POLL_DUE_ENTRY] = batch_poll.beat_entry()
    app.conf.beat_schedule = {**ours, **(app.conf.beat_schedule or {})}


def _on_after_configure(sender: Celery, **kwargs: Any) -> None:
    _add_entries(sender)


def offer_schedule(app: Celery) -> None:
    """Add the app's entries to ``app``'s beat schedule, unless ``RUNS_BEAT_SCHEDULE`` is off.

    An app not configured yet gets them once it is (``on_after_configure``): reading its
    configuration here would load it earlier than the host expects.
    """
    if not settings.RUNS_BEAT_SCHEDULE:
        return
    if app.configured:
        _add_entries(app)
    else:
        app.on_after_configure.connect(_on_after_configure, dispatch_uid="runs.beat")
