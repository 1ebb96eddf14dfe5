"""Bad input everywhere, generated: never a 500, never a change without a valid signature, and
management commands that refuse bad arguments with exit code 2 and a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import Run, RunEvent, WebhookEvent
from runs_dev.processes import database_url
from runs_simulator.signing import sign
from tests.conftest import WEBHOOK_SECRET

header_names = st.sampled_from(
    ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "x-other"]
)
header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.just("v1,"),
    st.builds(lambda n: f"v1,{'A' * n}=", st.integers(0, 60)),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode()),
)


def as_meta(headers: dict[str, str]) -> dict[str, str]:
    return {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}


@pytest.fixture
def target(run_row, webhook_secret):
    return run_row("in_progress", remote_id="resp_1")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, headers=st.dictionaries(header_names, header_values, max_size=5))
def test_unsigned_garbage_never_500s_and_never_changes_anything(target, body, headers):
    response = Client().post(
        "/webhooks/openai/", body, content_type="application/json", **as_meta(headers)
    )
    assert response.status_code == 400
    assert "error" in response.json()
    assert WebhookEvent.objects.count() == 0
    assert RunEvent.objects.count() == 0
    assert Run.objects.get(pk=target.pk).webhook_events == 0


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_signed_but_arbitrary_bodies_never_500(target, body, monkeypatch):
    from runs.engine import writer

    monkeypatch.setattr(writer, "wake", lambda run_id, **kwargs: True)
    headers = sign(body, WEBHOOK_SECRET, f"wh_{time.time_ns()}", int(time.time()))
    response = Client().post(
        "/webhooks/openai/", body, content_type="application/json", **as_meta(headers)
    )
    assert response.status_code in (200, 400)
    assert RunEvent.objects.count() == 0  # a wake never changes a status by itself


COMMAND_ARGS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "--metadata",
                "--deadline",
                "--timeout",
                "--backend",
                "--strategy",
                "--model",
                "--runs",
                "--kill-every",
                "--fault-rate",
            ]
        ),
        st.sampled_from(["", "=", "nokey", "k=v", "-1", "0", "abc", "1e309", "nan", "banana"]),
    ),
    min_size=1,
    max_size=4,
)


def run_manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            # The test database: a fresh clone has no migrated db.sqlite3 of its own.
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        },
    )


@pytest.mark.parametrize(
    "args",
    [
        ["startrun", ""],
        ["startrun", "hi", "--metadata", "nokey"],
        ["startrun", "hi", "--metadata", "=v"],
        ["startrun", "hi", "--backend", "banana"],
        ["startrun", "hi", "--deadline", "-5"],
        ["startrun", "hi", "--deadline", "abc"],
        ["startrun", "hi", "--timeout", "0"],
        # Bytes that are not UTF-8 reach Python as lone surrogates, which PostgreSQL refuses.
        ["startrun", "caf\udce9"],
        ["startrun", "hi", "--instructions", "\udcff"],
        ["startrun", "hi", "--metadata", "k=\udcff"],
        ["startbatch", "--file", "{prompts}", "--instructions", "\udcff"],
        ["runstatus", "abc"],
        ["runstatus", "999999999"],
        ["chaos", "--runs", "0"],
        ["chaos", "--fault-rate", "2"],
        ["chaos", "--tool-share", "-0.1"],
        ["chaos", "--stuck-after", "0"],
        ["demo", "--runs", "-1"],
        # nan passes every comparison: "--timeout nan" once meant no limit at all.
        ["startrun", "hi", "--wait", "--timeout", "nan"],
        ["startbatch", "--file", "{prompts}", "--timeout", "nan"],
        ["chaos", "--timeout", "nan"],
        ["chaos", "--kill-every", "inf"],
        ["chaos", "--flush-at", "-5"],
        ["chaos", "--report", "/proc/no/such/dir/report.json"],  # refused before the run
        ["demo", "--timeout", "nan"],
        ["register_webhook", "https://hooks.example.com/x", "--name", "\udcff"],
        ["register_webhook", "--rotate", "\udcff"],
    ],
)
def test_bad_command_arguments_exit_2_with_a_message(db, args, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one prompt\n")
    result = run_manage(*[str(prompts) if a == "{prompts}" else a for a in args])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip()


def test_a_batch_that_cannot_be_queued_says_so_in_one_line_and_is_left_to_the_sweep(
    transactional_db, tmp_path
):
    """``transactional_db``: the command's process commits its batch, which only a flush of the
    test database removes afterwards (a rolled-back test would leave it to the next tests)."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one prompt\n")

    result = run_manage("startbatch", "--file", str(prompts))  # the broker does not answer

    assert result.returncode == 1
    assert "a batch was created but could not be queued" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_batch_the_database_refuses_is_not_reported_as_created(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one prompt\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "startbatch", "--file", str(prompts)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}",
        },
    )
    assert result.returncode == 1
    assert "the database refused the batch: no such table" in result.stderr
    assert "was created" not in result.stderr and "Traceback" not in result.stderr


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(extra=COMMAND_ARGS)
def test_generated_startrun_arguments_never_crash(db, monkeypatch, extra):
    """Whatever the arguments, startrun ends with a clean exit code, never a traceback."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from runs.tasks import start_run

    monkeypatch.setattr(start_run, "delay", lambda run_id: None)  # no broker in this test
    try:
        call_command("startrun", "hello", *extra)
    except CommandError as exc:
        assert exc.returncode in (1, 2)
        assert str(exc)
    except SystemExit as exc:  # argparse: exit 2
        assert exc.code == 2
