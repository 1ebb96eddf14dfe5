"""Test settings: the project's settings with a database chosen for real concurrency.

PostgreSQL when it answers (``TEST_DATABASE_URL``, else the local server with trust auth), so the
locking tests run on a real server; otherwise a SQLite file, and PostgreSQL-only tests skip with
a message. The test database name carries a hash of this checkout and the process id, so two
test sessions on one machine (a developer's tree and CI's fresh clone, or two sessions in one tree)
never drop each other's database.
"""

import hashlib
import os

import environ

from project.settings import *  # noqa: F403
from project.settings import BASE_DIR

_SUFFIX = f"{hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:8]}_{os.getpid()}"


def _postgres_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    if os.environ.get("RUNS_TEST_SQLITE"):
        return None
    try:
        import psycopg

        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2).close()
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return None
    return "postgres://postgres@127.0.0.1:5432/runs"


_url = _postgres_url()
if os.environ.get("RUNS_TEST_STRICT") == "1" and not _url:
    # CI must run the PostgreSQL-only tests (row locks, races): never fall back to SQLite there.
    raise RuntimeError("RUNS_TEST_STRICT=1 but PostgreSQL does not answer on 127.0.0.1:5432")
if _url:
    DATABASES = {"default": environ.Env.db_url_config(_url)}
    DATABASES["default"]["TEST"] = {"NAME": f"test_runs_{_SUFFIX}"}
    # The same pool as the project's (project/settings.py), so the tests run what production runs.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 1, "max_size": 20, "timeout": 10.0}}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "var" / "test.sqlite3"),
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            # A file, not memory: the worker thread must see what the test committed.
            "TEST": {"NAME": str(BASE_DIR / "var" / f"test-{_SUFFIX}.sqlite3")},
        }
    }

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests point the client at the simulator they start; a short timeout keeps failures quick.
OPENAI_API_KEY = "sk-test-simulator"
OPENAI_TIMEOUT_S = 5.0
RUNS_DEADLINE_S = 120.0
LOGGING["loggers"]["runs"]["level"] = "WARNING"  # noqa: F405
# Live status publishing is off unless a test points it at the private Redis (``pubsub_url``).
RUNS_PUBSUB_URL = ""
# The suite plays no beat (a test that needs runs.poll_due sends it: ``beat_sending_poll_due``),
# so no run may be handed to the batches because this machine ran a poll late: the project's
# mode ("auto") with a threshold no test reaches. tests/test_poll_modes.py sets the real one.
RUNS_POLL_AUTO_LATE_S = 3600.0
# Throttle counters in this process's memory, never in a Redis another session shares.
RUNS_API_THROTTLE_CACHE = "default"
# A second, SQLite database beside PostgreSQL, for the few queries written per database
# (``runs/metadata_query.py``): a test that names it (``databases=["default", "sqlite"]``) runs the
# SQLite path in the same session that runs the PostgreSQL one.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # A file, not memory: a live server's request threads close every alias's connection, and
    # an in-memory database's connection belongs to the thread that made it.
    DATABASES["sqlite"] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BASE_DIR / "var" / "test-second.sqlite3"),
        "TEST": {"NAME": str(BASE_DIR / "var" / f"test-second-{_SUFFIX}.sqlite3")},
    }
