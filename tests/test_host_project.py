"""A fresh Django project adds ``runs`` as README's "Add runs to your project" says, and it works.

Nothing of this repository's demo host is used: the wheel is built from the sources, installed
into a new virtualenv (no site packages) with the tested versions (``constraints.txt``), and a
project made by ``django-admin startproject`` gets only the documented changes: ``runs`` and
``django_celery_results`` in ``INSTALLED_APPS``, Celery's standard Django boilerplate, the URLs,
a broker URL and a result backend. ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` come from the
environment (pointing at the simulator). The host's own ``celery -A hostsite worker`` then tracks
a run to ``completed``.

Slow on purpose (about a minute, most of it the install, which pip's cache makes local): it is
the one test that proves the wheel, the dependency ranges and the app's defaults are enough.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from contextlib import closing
from pathlib import Path

import pytest

from runs_dev import processes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent

#: What ``hostsite/settings.py`` gets, appended as a user would (README, step 2 and 5).
SETTINGS = """
INSTALLED_APPS += ["django_celery_results", "runs"]
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = "django-db"
"""

#: ``hostsite/celery.py``: Celery's documented boilerplate for Django, unchanged.
CELERY_PY = """import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")

app = Celery("hostsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""

#: A run the simulator finishes quickly.
START_A_RUN = """
from runs.services import create_run
from runs.tasks import start_run
run = create_run("Hello from a host project", metadata={
    "sim_queue_s": "0.05", "sim_duration_s": "0.3", "sim_outcome": "completed"})
start_run.delay(run.pk)
print("run", run.pk)
"""


def run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    """Run a command to completion; its output, or a failure that shows it."""
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{args} exited with {result.returncode}:\n{output}"
    return output


def clean_environment() -> dict[str, str]:
    """This process's environment without what points at the repository's own set-up."""
    drop = ("DJANGO_", "CELERY_", "OPENAI_", "RUNS_", "PYTHON", "VIRTUAL_ENV")
    return {key: value for key, value in os.environ.items() if not key.startswith(drop)}


def build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    """The wheel, built from a copy of the sources (a build leaves ``build/`` behind it)."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for package in ("runs", "runs_simulator"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, source],
        tmp_path, env)  # fmt: skip
    (wheel,) = tmp_path.glob("runs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    # The app and the simulator only: no `project`, `runs_dev`, `bench` or `tests` to clash with.
    assert top_level == {"runs", "runs_simulator", f"{wheel.name.split('-py3')[0]}.dist-info"}
    return wheel


def make_host_project(host: Path, venv: Path, env: dict[str, str]) -> None:
    """``django-admin startproject hostsite`` plus the documented changes, nothing else."""
    host.mkdir()
    run([venv / "bin" / "django-admin", "startproject", "hostsite", host], host, env)
    package = host / "hostsite"
    settings = package / "settings.py"
    settings.write_text("import os\n" + settings.read_text() + SETTINGS)
    (package / "celery.py").write_text(CELERY_PY)
    (package / "__init__.py").write_text(
        'from .celery import app as celery_app\n\n__all__ = ("celery_app",)\n'
    )
    urls = package / "urls.py"
    text = urls.read_text().replace(
        "from django.urls import path", "from django.urls import include, path"
    )
    urls.write_text(
        text.replace("urlpatterns = [", 'urlpatterns = [\n    path("", include("runs.urls")),')
    )


def runs_ids(output: str) -> set[str]:
    """The check ids of ``runs``'s own checks in a ``manage.py check`` output."""
    return set(re.findall(r"\((runs\.[EWIC]\d+)\)", output))


def run_status(database: Path, run_id: int) -> str:
    """The run's status, read from the host's own database."""
    with closing(sqlite3.connect(database, timeout=10)) as connection:
        query = "SELECT status FROM runs_run WHERE id = ?"
        (status,) = connection.execute(query, (run_id,)).fetchone()
    return status


def test_a_fresh_host_project_tracks_a_run_to_completed(tmp_path, simulator, redis_url, capsys):
    env = clean_environment()
    wheel = build_wheel(tmp_path, env)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, env)
    python = venv / "bin" / "python"
    started = time.monotonic()
    run([python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel], tmp_path,
        env, timeout=300)  # fmt: skip
    install_s = time.monotonic() - started

    host = tmp_path / "host"
    make_host_project(host, venv, env)
    manage = [python, host / "manage.py"]

    # Before the deployment's variables are set: runs says what is missing, and check fails.
    bare = subprocess.run(
        [*map(str, manage), "check", "--deploy"], cwd=host, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    before = bare.stdout + bare.stderr
    assert bare.returncode != 0
    assert runs_ids(before) == {"runs.E001", "runs.W001"}, before

    broker = redis_url.rsplit("/", 1)[0] + "/13"  # a database of the private Redis for this test
    env |= {
        "CELERY_BROKER_URL": broker,
        "OPENAI_API_KEY": "sk-host-project",
        "OPENAI_BASE_URL": simulator.base_url,
        "OPENAI_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    run([*manage, "check"], host, env)
    after = run([*manage, "check", "--deploy"], host, env)
    assert runs_ids(after) == set(), after
    run([*manage, "migrate", "--noinput"], host, env)

    worker = subprocess.Popen(
        [venv / "bin" / "celery", "-A", "hostsite", "worker", "--pool", "threads",
         "--concurrency", "2", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
         "--hostname", f"host-{time.time_ns()}@%h"],
        cwd=host, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        output = run([*manage, "shell", "-c", START_A_RUN], host, env)
        run_id = int(re.search(r"^run (\d+)$", output, re.MULTILINE)[1])
        give_up = time.monotonic() + 90
        while (status := run_status(host / "db.sqlite3", run_id)) != "completed":
            assert worker.poll() is None, f"the host's worker exited with {worker.returncode}"
            assert status not in {"failed", "cancelled", "expired", "incomplete"}, status
            assert time.monotonic() < give_up, f"run {run_id} still {status} after 90 s"
            time.sleep(0.5)
    finally:
        processes.stop(worker)

    with capsys.disabled():  # the figures and outputs the closing note quotes
        print(f"\n[host project] wheel install: {install_s:.1f} s")
        print(f"[host project] check --deploy before the variables:\n{before}")
        print(f"[host project] check --deploy after:\n{after}")
