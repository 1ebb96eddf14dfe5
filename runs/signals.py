"""Signals applications connect to.

Sent on commit, so a receiver never sees a change that was rolled back, and may run in the web
process or in a worker: keep receivers quick and hand slow work to a task.
"""

from django.dispatch import Signal

#: A run's status changed. Sent on commit with ``run_id``, ``from_status``, ``to_status`` and
#: ``source`` (``create``, ``poll``, ``webhook``, ``tool``, ``sweep``, ``user``, ``deadline``).
run_status_changed = Signal()
