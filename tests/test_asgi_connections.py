"""How each kind of process holds its PostgreSQL connections.

By default every process has one pool (Django's, on psycopg_pool) shared by its threads: a Celery
worker, which closes its connections after every task, hands them back instead of reconnecting,
and an ASGI server's request threads cannot pile up idle connections beyond the pool's size.

With the pool off (``DATABASE_POOL_MAX_SIZE=0``, behind PgBouncer say), persistence is the old
``CONN_MAX_AGE``, which the ASGI entry point turns off: Django runs each request's synchronous
code on a thread of its own, so a connection kept for ``CONN_MAX_AGE`` stays with a thread nobody
uses again (a thousand webhooks left one uvicorn process holding 82 idle connections and
PostgreSQL refused every worker, "too many clients").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from project.settings import BASE_DIR

READ = (
    "import json; from django.conf import settings; d = settings.DATABASES['default']; "
    "print(json.dumps([d['CONN_MAX_AGE'], d.get('OPTIONS', {}).get('pool')]))"
)


def connections(entry_point: str, **env: str) -> tuple[int, dict | None]:
    """(CONN_MAX_AGE, pool options) as a process started through ``entry_point`` sees them
    (nothing connects)."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_CONN", "DATABASE_POOL"))
    }
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
    max_age, pool = json.loads(out.stdout)
    return max_age, pool


@pytest.mark.parametrize("entry_point", ["project.asgi", "project.wsgi", "project.celery"])
def test_every_process_shares_one_bounded_pool_between_its_threads(entry_point):
    max_age, pool = connections(entry_point)
    assert max_age == 0
    assert pool == {"min_size": 1, "max_size": 20, "timeout": 10.0}


def test_the_pool_size_is_a_setting():
    assert connections("project.celery", DATABASE_POOL_MAX_SIZE="40")[1]["max_size"] == 40


@pytest.mark.parametrize(("entry_point", "expected"), [("project.asgi", 0), ("project.wsgi", 60)])
def test_without_the_pool_only_the_asgi_server_drops_its_connection_after_each_request(
    entry_point, expected
):
    assert connections(entry_point, DATABASE_POOL_MAX_SIZE="0") == (expected, None)


def test_an_operator_behind_a_pooler_may_still_keep_them_under_asgi():
    assert connections("project.asgi", DATABASE_POOL_MAX_SIZE="0", DATABASE_CONN_MAX_AGE="30") == (
        30,
        None,
    )
