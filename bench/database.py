"""The benchmark's own database: PostgreSQL ``runs_bench`` when a local server answers.

Why not the project's SQLite file: one SQLite writer at a time cannot hold thousands of
concurrent runs written by two workers and a web process. Why a dedicated database: the bench
empties its tables between scenarios and must never touch a developer's or the tests' data.
Without PostgreSQL (``BENCH_DATABASE_URL`` unset and nothing on 127.0.0.1:5432) it falls back to
a SQLite file under ``var/``, fine for ``--quick``, and says so in the results.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from .processes import ROOT

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: ``BENCH_DB_NAME`` lets a second bench (the smoke test) use its own database side by side.
BENCH_DB = os.environ.get("BENCH_DB_NAME", "runs_bench")


def choose_url() -> tuple[str, str]:
    """(DATABASE_URL for every bench process, a note for the report)."""
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit, "BENCH_DATABASE_URL"
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=2, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        path = ROOT / "var" / f"{BENCH_DB}.sqlite3"
        path.parent.mkdir(exist_ok=True)
        return f"sqlite:///{path}", f"SQLite fallback (PostgreSQL not reachable: {exc})"
    return f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}", f"PostgreSQL database {BENCH_DB}"


def vendor(url: str) -> str:
    return "sqlite" if urlparse(url).scheme.startswith("sqlite") else "postgresql"


def migrate() -> None:
    """Bring the bench database to the current migrations (Django must be set up)."""
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def empty_tables() -> None:
    """Delete every run, thread, event and task result: each scenario starts from nothing."""
    from django.apps import apps
    from django.db import connection

    tables = [m._meta.db_table for m in apps.get_app_config("runs").get_models()]
    tables.append(apps.get_model("django_celery_results", "TaskResult")._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            quoted = ", ".join(connection.ops.quote_name(t) for t in tables)
            cursor.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
