"""Settings from the environment (``project/environment.py``): a value that is not what its
variable takes is an error naming the variable, never a silent misreading or a bare traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from project.environment import StrictEnv

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("raw", "read"), [("2.5", 2.5), (" 7 ", 7.0), ("1e3", 1000.0), ("-1", -1.0)]
)
def test_a_number_is_read_as_python_reads_it(monkeypatch, raw, read):
    monkeypatch.setenv("RUNS_X_S", raw)
    assert StrictEnv().float("RUNS_X_S", 1.0) == read


@pytest.mark.parametrize("raw", ["abc", "5s", "2.5.1", "0x10", "nan", "inf"])
def test_what_is_not_a_number_is_refused_by_name_not_misread(monkeypatch, raw):
    """django-environ read "5s" as 5.0 and "2.5.1" as 25.1, values a range check accepts."""
    monkeypatch.setenv("RUNS_X_S", raw)
    with pytest.raises(ImproperlyConfigured, match=f"RUNS_X_S={raw!r}"):
        StrictEnv().float("RUNS_X_S", 1.0)


def test_integers_unset_and_empty_values_take_the_default(monkeypatch):
    monkeypatch.delenv("RUNS_N", raising=False)
    assert StrictEnv().int("RUNS_N", 3) == 3
    monkeypatch.setenv("RUNS_N", "")
    assert StrictEnv().int("RUNS_N", None) is None
    monkeypatch.setenv("RUNS_N", "2.5")
    with pytest.raises(ImproperlyConfigured, match="RUNS_N='2.5' is not a whole number"):
        StrictEnv().int("RUNS_N", 3)


@pytest.mark.parametrize(
    "url",
    ["garbage", "postgres://user:s3cret@host:notaport/db", "postgress://user:s3cret@host/db"],
    ids=["no scheme", "bad port", "misspelt scheme"],
)
def test_a_database_url_that_cannot_be_read_is_named_and_its_password_never_shown(monkeypatch, url):
    monkeypatch.setenv("DATABASE_URL", url)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with pytest.raises(ImproperlyConfigured, match="DATABASE_URL") as info:
            StrictEnv().db("DATABASE_URL")
    assert "s3cret" not in str(info.value)
    assert not [w for w in warned if "s3cret" in str(w.message)]


def test_a_log_level_logging_does_not_know_is_refused(monkeypatch):
    monkeypatch.setenv("RUNS_LOG_LEVEL", "debug")
    assert StrictEnv().log_level("RUNS_LOG_LEVEL", "INFO") == "DEBUG"
    monkeypatch.setenv("RUNS_LOG_LEVEL", "NOPE")
    with pytest.raises(ImproperlyConfigured, match="RUNS_LOG_LEVEL='NOPE' is not a log level"):
        StrictEnv().log_level("RUNS_LOG_LEVEL", "INFO")


def test_the_projects_settings_refuse_a_bad_value_with_its_name():
    env = {"PATH": "/usr/bin:/bin", "RUNS_POLL_BASE_S": "abc", "DJANGO_SECRET_KEY": "x" * 50}
    out = subprocess.run(
        [sys.executable, "-c", "import project.settings"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "RUNS_POLL_BASE_S='abc' is not a number" in out.stderr


def test_a_value_naming_another_variable_is_read_through_it(monkeypatch):
    """django-environ's ``$OTHER`` indirection, as for every other setting."""
    monkeypatch.setenv("STREAM_CAP", "5")
    monkeypatch.setenv("RUNS_N", "$STREAM_CAP")
    assert StrictEnv().int("RUNS_N", 3) == 5


def test_a_note_after_a_value_in_a_dotenv_file_is_a_comment(tmp_path, monkeypatch):
    """``.env.example``'s lines, uncommented into a ``.env``, read as their values."""
    import environ

    env_file = tmp_path / ".env"
    env_file.write_text("RUNS_X_S=5                     # longest delay between polls\n")
    monkeypatch.delenv("RUNS_X_S", raising=False)
    try:
        environ.Env.read_env(env_file, parse_comments=True)
        assert StrictEnv().float("RUNS_X_S", 1.0) == 5.0
    finally:
        os.environ.pop("RUNS_X_S", None)  # read_env wrote it behind monkeypatch's back


def test_every_value_in_env_example_uncommented_reads_as_its_setting(tmp_path):
    """``.env.example`` says "copy to .env": each of its ``# NAME=value`` lines, uncommented
    (its note after the value a ``#`` comment), must be a value the settings accept."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    values = [line[2:] for line in lines if line[:2] == "# " and "=" in line.split()[1]]
    env_file = tmp_path / "example.env"
    env_file.write_text("\n".join(v for v in values if v.split("=")[0].isupper()) + "\n")
    read = f"environ.Env.read_env({str(env_file)!r}, parse_comments=True)"
    code = f"import environ; {read}; import project.settings"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
