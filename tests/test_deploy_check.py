"""``manage.py check --deploy`` with the environment compose gives the web service.

A plain-HTTP local stack must keep exactly Django's four HTTPS warnings (HSTS, the SSL redirect,
secure session and CSRF cookies): nothing about the secret key, debug or hosts. Behind TLS, the
``DJANGO_SECURE_*`` variables docs/operations.md lists turn those off too, and the check is clean.
The environment is read from docker-compose.yml itself, so the test follows the file.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<rest>[^}]*))?\}")
#: What a plain-HTTP stack cannot avoid: each asks for HTTPS.
HTTPS_WARNINGS = {"security.W004", "security.W008", "security.W012", "security.W016"}
#: What an operator behind a TLS proxy sets (docs/operations.md, "Security defaults").
BEHIND_TLS = {
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SESSION_COOKIE_SECURE": "true",
    "DJANGO_CSRF_COOKIE_SECURE": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
}


def compose_web_environment(operator: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The web service's environment as compose would build it from ``operator``'s variables:
    ``${X:-default}`` falls back to its default, ``${X:?...}`` must be given."""

    def substitute(match: re.Match[str]) -> str:
        name, op, rest = match["name"], match["op"], match["rest"]
        if name in operator:
            return operator[name]
        assert op == "-", f"compose would refuse to start without {name}"
        return rest

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    environment = {
        key: VARIABLE.sub(substitute, str(value))
        for key, value in services["web"]["environment"].items()
    }
    # The container's private directory, here a private one too.
    environment["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    return environment


def check_deploy(environment: dict[str, str]) -> tuple[set[str], str]:
    """Run ``manage.py check --deploy`` in a clean environment: the issue ids it reports."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return set(re.findall(r"\((\w+\.[EWIC]\d+)\)", output)), output


@pytest.fixture
def operator() -> dict[str, str]:
    """The secrets compose demands, as an operator would make them."""
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
    }


def test_a_plain_http_stack_gets_only_the_https_warnings(operator, tmp_path):
    issues, output = check_deploy(compose_web_environment(operator, tmp_path))
    assert issues == HTTPS_WARNINGS, output


def test_behind_tls_the_documented_variables_leave_nothing_to_report(operator, tmp_path):
    issues, output = check_deploy(compose_web_environment(operator | BEHIND_TLS, tmp_path))
    assert issues == set(), output
    assert "no issues" in output


def test_a_short_known_key_is_reported(operator, tmp_path):
    """The check this set-up exists to pass: the old compose default would fail it."""
    weak = operator | {"DJANGO_SECRET_KEY": "change-me-in-production"}
    issues, output = check_deploy(compose_web_environment(weak, tmp_path))
    assert "security.W009" in issues, output
