"""ASGI entry point (uvicorn, daphne).

On PostgreSQL the process has a connection pool (project/settings.py) and this file changes
nothing. Without one, no persistent database connections here: Django runs each request's
synchronous code (the webhook view, the admin) on a thread of its own, and a connection kept for
``CONN_MAX_AGE`` stays with a thread that is never used again. At a thousand webhooks that
exhausted PostgreSQL's ``max_connections`` (82 idle connections from one uvicorn process;
docs/operations.md). Workers and WSGI servers then keep theirs (``DATABASE_CONN_MAX_AGE``,
default 60 s); set the variable here only behind a pooler that makes it safe.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
application = get_asgi_application()
