"""docker-compose.yml: every service there, wired by environment; ``docker compose config`` too.

The structural checks run everywhere (PyYAML); the Compose CLI check runs where Docker Compose
is installed (the v2 plugin or v1 ``docker-compose``) and skips with a message elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
APP_SERVICES = ("web", "worker", "beat", "flower", "simulator")


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def test_every_service_is_there(services):
    assert set(services) == {*APP_SERVICES, "redis", "postgres"}


@pytest.mark.parametrize(
    ("service", "command"),
    [
        ("web", "uvicorn project.asgi:application"),
        ("worker", "celery -A project worker"),
        ("beat", "celery -A project beat"),
        ("flower", "celery -A project flower"),
        ("simulator", "python -m runs_simulator"),
    ],
)
def test_each_app_service_runs_its_process(services, service, command):
    assert command in services[service]["command"]


def test_the_web_is_a_production_server(services):
    assert "runserver" not in services["web"]["command"]


@pytest.mark.parametrize("service", [s for s in APP_SERVICES if s != "simulator"])
def test_app_services_are_wired_to_postgres_and_redis_by_environment(services, service):
    env = services[service]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
    assert env["CELERY_BROKER_URL"] == env["REDIS_URL"] == "redis://redis:6379/0"
    assert "OPENAI_BASE_URL" in env and "OPENAI_API_KEY" in env


def test_operators_reach_flower_and_metrics(services):
    assert "5555:5555" in services["flower"]["ports"]
    assert services["worker"]["environment"]["RUNS_WORKER_METRICS_PORT"] == "9808"
    assert services["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert "RUNS_API_TOKENS" in services["web"]["environment"]


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_accepts_the_file():
    cli = compose_cli()
    if cli is None:
        pytest.skip(
            "Docker Compose is not installed (neither `docker compose` nor `docker-compose`); "
            "the structural checks above still ran"
        )
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
