"""Development tooling for the ``runs`` app: the demo, the chaos run and the simulator command.

Kept out of ``runs`` so the runtime app imports nothing of the demo host project (``project``)
or the simulator: a host project installs ``runs`` alone, and adds ``runs_dev`` only where it
wants ``manage.py demo``, ``chaos`` and ``runsimulator`` and the example tools.
"""
