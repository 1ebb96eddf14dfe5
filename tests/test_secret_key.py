"""The demo host's SECRET_KEY: never a known string; random, made once, shared by the checkout."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from project.secret_key import KEY_LENGTH, local_secret_key

ROOT = Path(__file__).resolve().parent.parent


def test_the_first_call_makes_a_private_random_key_and_later_calls_read_it(tmp_path):
    path = tmp_path / "var" / "secret_key"
    key = local_secret_key(path)
    assert len(key) == KEY_LENGTH and len(set(key)) > 20  # what check --deploy wants, and more
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_secret_key(path) == key
    assert local_secret_key(tmp_path / "elsewhere") != key  # another checkout, another key
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no drafts left behind


def test_processes_starting_together_agree_on_one_key(tmp_path):
    """``make demo`` starts the web process and a worker at once: one key for all of them."""
    path = tmp_path / "secret_key"
    code = (
        "from pathlib import Path; from project.secret_key import local_secret_key; "
        f"print(local_secret_key(Path({str(path)!r})))"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    keys = {child.communicate(timeout=60)[0].strip() for child in children}
    assert keys == {path.read_text().strip()}


def test_a_damaged_key_file_is_an_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("short\n")
    with pytest.raises(RuntimeError, match="delete it to have a new one made"):
        local_secret_key(path)


def test_the_environment_wins_and_the_old_default_is_gone(tmp_path):
    def secret_key(**env: str) -> str:
        code = "from django.conf import settings; print(settings.SECRET_KEY)"
        result = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "project.settings"}
            | env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.strip()

    assert secret_key(DJANGO_SECRET_KEY="from-the-environment-" + "x" * 40).startswith(
        "from-the-environment-"
    )
    made = secret_key()
    assert made == (ROOT / "var" / "secret_key").read_text().strip()
    assert "insecure" not in made and "change-me" not in made
