"""The intake bench's web app: the demo project's, with the bare view on the intake's path too.

The demo project serves the webhook intake on Django's WSGI handler (runs/intake/asgi.py) and
every other path, ``/bench/bare/`` included, on the ASGI handler. ``/bench/bare-wsgi/`` is the
same bare view served the way the intake is, so the intake can be read against both: the
cheapest view on Django's stock ASGI path (the yardstick issue 13 was filed with), and the
cheapest view on the intake's own path. ``BENCH_INTAKE_PATH=asgi`` leaves the intake on the
ASGI handler, as before it had a path of its own (``bench.intake_path`` compares the two).
"""

import os

from django.core.asgi import get_asgi_application

from runs.intake.asgi import with_intake_on_wsgi

from .intake import BARE_WSGI_PATH, WEBHOOK_PATH

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")

_intake = [] if os.environ.get("BENCH_INTAKE_PATH") == "asgi" else [WEBHOOK_PATH]
application = with_intake_on_wsgi(get_asgi_application(), paths=[*_intake, BARE_WSGI_PATH])
