"""ASGI entry point (uvicorn, daphne).

On PostgreSQL the process has a connection pool (project/settings.py) and this file changes
nothing. Without one, no persistent database connections here: Django runs each request's
synchronous code (the admin, the API) on a thread of its own, and a connection kept for
``CONN_MAX_AGE`` stays with a thread that is never used again. At a thousand webhooks that
exhausted PostgreSQL's ``max_connections`` (82 idle connections from one uvicorn process;
docs/operations.md). Workers and WSGI servers then keep theirs (``DATABASE_CONN_MAX_AGE``,
default 60 s); set the variable here only behind a pooler that makes it safe.
"""

import os

from django.core.asgi import get_asgi_application

from runs.intake.asgi import with_intake_on_wsgi

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
# The webhook intake on Django's WSGI handler, in a thread pool; everything else (the admin, the
# API, the live status streams) on the ASGI handler. runs/intake/asgi.py says why.
application = with_intake_on_wsgi(get_asgi_application())
