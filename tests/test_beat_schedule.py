"""The app offers its beat schedule: the recovery sweep runs with no entry in the host's settings.

``runs/beat.py`` adds a ``runs-sweep`` entry to the Celery app's ``beat_schedule`` when Django
starts (``RunsConfig.ready``). The unit tests pin the rules (the interval setting, the host's own
entry wins, ``RUNS_BEAT_SCHEDULE = False`` adds nothing, an app configured later still gets it);
the integration test starts a real ``celery beat`` for the demo host, whose settings no longer
name the sweep, and finds the sweep it sent in the broker.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import redis
from celery import Celery

from runs.beat import POLL_DUE_ENTRY, SWEEP_ENTRY, offer_schedule, sweep_entry
from runs_dev import processes


def configured_app(**conf: object) -> Celery:
    """A host's Celery app, its configuration already loaded."""
    app = Celery("hostsite", set_as_current=False, fixups=[])
    app.conf.update(conf)
    app.conf.beat_schedule  # noqa: B018 - reading it loads the configuration
    assert app.configured
    return app


def test_the_sweep_is_offered_every_sweep_interval(settings):
    """Dropped when not started within two intervals, never sooner than 30 s: a worker whose
    clock runs a few seconds ahead of beat's must not drop every sweep."""
    settings.RUNS_SWEEP_INTERVAL_S = 2.5
    app = configured_app()
    offer_schedule(app)
    assert app.conf.beat_schedule[SWEEP_ENTRY] == {
        "task": "runs.sweep",
        "schedule": 2.5,
        "options": {"expires": 30.0},
    }
    settings.RUNS_SWEEP_INTERVAL_S = 60.0
    assert sweep_entry()["options"]["expires"] == 120.0


def test_the_hosts_own_entries_are_kept_and_its_runs_sweep_wins():
    mine = {"task": "runs.sweep", "schedule": 60.0}
    report = {"task": "hostsite.report", "schedule": 3600.0}
    app = configured_app(beat_schedule={SWEEP_ENTRY: mine, "report": report})
    offer_schedule(app)
    assert app.conf.beat_schedule[SWEEP_ENTRY] == mine
    assert app.conf.beat_schedule["report"] == report
    # Webhook runs' safety nets are polled by due time by default: runs.poll_due is offered too.
    assert app.conf.beat_schedule[POLL_DUE_ENTRY]["task"] == "runs.poll_due"


def test_a_host_can_turn_the_offer_off(settings):
    settings.RUNS_BEAT_SCHEDULE = False
    app = configured_app()
    offer_schedule(app)
    assert SWEEP_ENTRY not in app.conf.beat_schedule


def test_an_app_configured_later_gets_the_entry_when_it_is():
    app = Celery("hostsite", set_as_current=False, fixups=[])
    offer_schedule(app)
    assert not app.configured, "offering must not load the host's configuration early"
    assert app.conf.beat_schedule[SWEEP_ENTRY]["task"] == "runs.sweep"


def sent_tasks(client: redis.Redis) -> list[str]:
    """Names of the tasks waiting in every queue of a Redis broker (kombu keeps a list each)."""
    names = []
    for key in client.scan_iter():
        if client.type(key) == b"list":
            for raw in client.lrange(key, 0, -1):
                names.append(json.loads(raw)["headers"]["task"])
    return names


@pytest.mark.integration
def test_a_real_beat_sends_the_sweep_with_nothing_in_the_hosts_settings(redis_url, tmp_path: Path):
    from django.conf import settings

    assert "runs-sweep" not in (getattr(settings, "CELERY_BEAT_SCHEDULE", None) or {})
    broker = redis_url.rsplit("/", 1)[0] + "/11"  # a database of the private Redis for this test
    client = redis.Redis.from_url(broker)
    client.flushdb()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "CELERY_BROKER_URL": broker,
        "RUNS_SWEEP_INTERVAL_S": "0.5",
        "RUNS_LOG_LEVEL": "ERROR",
    }
    beat = processes.start_beat(env, tmp_path)
    try:
        give_up = time.monotonic() + 45
        while "runs.sweep" not in sent_tasks(client):
            assert beat.poll() is None, f"celery beat exited with code {beat.returncode}"
            assert time.monotonic() < give_up, "beat sent no runs.sweep within 45 s"
            time.sleep(0.25)
    finally:
        processes.stop(beat)
        client.flushdb()
