"""docker-compose.yml: every service there, wired by environment, locked down by default;
``docker compose config`` too.

The structural checks run everywhere (PyYAML); the Compose CLI checks run where Docker Compose
is installed (the v2 plugin or v1 ``docker-compose``) and skip with a message elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
APP_SERVICES = ("web", "worker", "beat", "flower", "simulator")
#: What an operator must set before compose starts anything: no secret has a default.
REQUIRED_SECRETS = {
    "DJANGO_SECRET_KEY": "k" * 20 + "-test-only-0123456789-abcdefghijklmnopqrstuvwxyz",
    "POSTGRES_PASSWORD": "test-only-pg",
    "FLOWER_BASIC_AUTH": "ops:test-only-flower",
}
#: ``${NAME:-default}`` / ``${NAME:?message}`` in the file.
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<rest>[^}]*))?\}")


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
    assert services["flower"]["ports"] == ["${RUNS_PUBLISH_ADDR:-127.0.0.1}:5555:5555"]
    assert services["worker"]["environment"]["RUNS_WORKER_METRICS_PORT"] == "9808"
    assert services["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert "RUNS_API_TOKENS" in services["web"]["environment"]
    # Prometheus in the compose network scrapes web:8000 with this token (loopback needs none).
    assert services["web"]["environment"]["RUNS_METRICS_TOKEN"] == "${RUNS_METRICS_TOKEN:-}"


# --- locked down by default ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REQUIRED_SECRETS))
def test_every_secret_must_be_set_it_has_no_default(name):
    uses = [m for m in VARIABLE.finditer(COMPOSE_FILE.read_text()) if m["name"] == name]
    assert uses, f"{name} is not used"
    assert all(m["op"] == "?" for m in uses), f"{name} must be ${{{name}:?...}} everywhere"


def test_nothing_secret_looking_has_a_default_value():
    """The only default that looks like a key is the simulator's placeholder, which the real
    API refuses; every other secret-like variable defaults to empty or must be set."""
    secret_like = re.compile(r"SECRET|PASSWORD|TOKEN|AUTH|KEY")
    defaults = {
        m["name"]: m["rest"]
        for m in VARIABLE.finditer(COMPOSE_FILE.read_text())
        if m["op"] == "-" and secret_like.search(m["name"])
    }
    assert defaults.pop("OPENAI_API_KEY") == "sk-local-simulator"
    assert all(value == "" for value in defaults.values()), defaults


def test_flower_always_asks_for_a_password(services):
    auth = services["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert auth.startswith("${FLOWER_BASIC_AUTH:?")  # Flower reads it as --basic-auth
    assert "--basic-auth" not in services["flower"]["command"]  # not on a command line for ps


def test_the_simulator_is_opt_in_and_unreachable_from_the_host(services):
    simulator = services["simulator"]
    assert simulator["profiles"] == ["simulator"]
    assert "ports" not in simulator  # its /_sim/config could point webhooks anywhere
    assert not any(k in str(simulator.get("environment", {})) for k in REQUIRED_SECRETS)


def test_published_ports_bind_loopback_unless_told_otherwise(services):
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published  # web and flower
    assert all(port.startswith("${RUNS_PUBLISH_ADDR:-127.0.0.1}:") for port in published)
    assert "ports" not in services["redis"] and "ports" not in services["postgres"]
    assert services["worker"]["environment"]["RUNS_WORKER_METRICS_ADDR"] == "0.0.0.0"
    assert "ports" not in services["worker"]  # 9808 is for the compose network only


def test_allowed_hosts_are_explicit_names(services):
    hosts = services["web"]["environment"]["DJANGO_ALLOWED_HOSTS"]
    assert "*" not in hosts
    assert hosts == "${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1,web}"
    assert services["web"]["environment"]["DJANGO_DEBUG"] == "false"


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def run_compose(*args: str, secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``docker compose -f docker-compose.yml ARGS`` with only ``secrets`` of the required ones."""
    cli = compose_cli()
    if cli is None:
        pytest.skip(
            "Docker Compose is not installed (neither `docker compose` nor `docker-compose`); "
            "the structural checks above still ran"
        )
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_SECRETS} | secrets
    return subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


def test_docker_compose_accepts_the_file():
    result = run_compose("config", "--quiet", secrets=REQUIRED_SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED_SECRETS))
def test_docker_compose_refuses_to_start_without_a_secret(missing):
    result = run_compose(
        "config", "--quiet", secrets={k: v for k, v in REQUIRED_SECRETS.items() if k != missing}
    )
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_compose_sees_the_simulator_as_the_only_opt_in_service():
    profiles = run_compose("config", "--profiles", secrets=REQUIRED_SECRETS)
    assert profiles.returncode == 0, profiles.stderr
    assert profiles.stdout.split() == ["simulator"]


def test_the_web_processes_run_on_uvloop_so_keep_alive_answers_are_not_held(services):
    """On asyncio, uvicorn --workers 2 leaves Nagle's algorithm on every accepted connection, and
    each keep-alive request after the first waits about 40 ms for a delayed ACK."""
    (line,) = [
        line.strip()
        for line in services["web"]["command"].splitlines()
        if "uvicorn project.asgi:application" in line
    ]
    assert line.startswith("exec uvicorn") and line.endswith('--workers 2 --loop uvloop"')
