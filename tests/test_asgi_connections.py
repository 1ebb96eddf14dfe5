"""The ASGI web process keeps no database connection between requests; workers and WSGI do.

Under ASGI, Django runs each request's synchronous code on a thread of its own, so a connection
kept for ``CONN_MAX_AGE`` stays with a thread nobody uses again: a thousand webhooks left one
uvicorn process holding 82 idle connections and PostgreSQL refused every worker ("too many
clients"). ``project/asgi.py`` turns persistence off before the settings load.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from project.settings import BASE_DIR

READ = "from django.conf import settings; print(settings.DATABASES['default']['CONN_MAX_AGE'])"


def conn_max_age(entry_point: str, **env: str) -> int:
    """CONN_MAX_AGE as a process started through ``entry_point`` sees it (nothing connects)."""
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_CONN_MAX_AGE"}
    environment.update(DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused", **env)
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run(
        [sys.executable, "-c", f"import {entry_point}; {READ}"],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(out.stdout.strip())


@pytest.mark.parametrize(("entry_point", "expected"), [("project.asgi", 0), ("project.wsgi", 60)])
def test_only_the_asgi_server_drops_its_connection_after_each_request(entry_point, expected):
    assert conn_max_age(entry_point) == expected


def test_an_operator_behind_a_pooler_may_still_keep_them_under_asgi():
    assert conn_max_age("project.asgi", DATABASE_CONN_MAX_AGE="30") == 30
