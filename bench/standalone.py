"""What the stand-alone benches (``bench.batch_vs_per_run``, ``bench.start_rate``,
``bench.cost_modes``, ``bench.intake_store``, ``bench.keepalive``) share: pointing this process
and its children at the bench's private services, waiting until the workers they start answer,
writing a result's JSON and page side by side.

Why not ``bench.scenario``: those benches run one deployment per row from a plain script, with no
progress bar or samplers, and each names its own queue so it never meets another bench.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .database import migrate


def point_at(
    *, sim_url: str, redis_url: str, db_url: str, queue: str, settings: str, **extra: str
) -> dict[str, str]:
    """Set this process's environment for the bench's services, set Django up, migrate the bench
    database; the environment, for the child processes (workers, beat, web)."""
    env = {
        "DJANGO_SETTINGS_MODULE": settings,
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": redis_url,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": sim_url,
        "OPENAI_API_KEY": "sk-bench-simulator",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "RUNS_QUEUE_PREFIX": queue,
        "RUNS_PUBSUB_URL": "",
        "RUNS_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    os.environ.update(env)
    import django

    django.setup()
    migrate()
    return env


def write_pair(out: Path, stem: str, results: dict[str, Any], page: str) -> None:
    """Write ``stem.json`` (everything) and ``stem.md`` (the page people read) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(page)
    print(f"wrote {out / f'{stem}.json'} and {out / f'{stem}.md'}")


def wait_workers(app: Any, count: int, timeout: float = 60.0) -> None:
    """Return once ``count`` workers answer a ping; RuntimeError after ``timeout`` seconds."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if len(app.control.ping(timeout=0.5)) >= count:
            return
    raise RuntimeError(f"the workers did not answer a ping within {timeout:.0f} s")
