"""Settings for benchmark processes: the project's settings plus a bare view to compare against.

Only the URLconf differs (it adds ``/bench/bare/``), so the worker and web processes the bench
starts run the project's code with the project's configuration.
"""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
