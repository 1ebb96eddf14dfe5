"""``manage.py check`` says what a host project got wrong before a worker's log does.

Each test breaks one thing a host sets (or forgets) and reads the ids the ``runs`` checks report.
The Celery checks read the host's current Celery app, so those tests make a fresh app current,
configured as a host's ``celery.py`` would, and put the test project's app back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from celery import Celery, current_app
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings


def runs_ids() -> list[str]:
    """The ids the ``runs`` checks report now."""
    return [message.id for message in run_checks(tags=["runs"])]


@pytest.fixture
def host_celery_app(monkeypatch) -> Iterator[Callable[..., Celery]]:
    """Make a Celery app configured with the given settings the current one, as the host's
    ``celery.py`` does; the broker variable of this environment is hidden meanwhile."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    previous = current_app._get_current_object()

    def make(**conf: object) -> Celery:
        from django.conf import settings

        app = Celery("hostsite", set_as_current=True, fixups=[])
        # The queues this project's settings route to, read by a worker without -Q (runs.W303).
        app.conf.update({"task_queues": settings.CELERY_TASK_QUEUES, **conf})
        return app

    yield make
    previous.set_current()


def test_the_test_project_is_configured_correctly_and_hears_nothing_from_runs():
    assert runs_ids() == []


def test_no_api_key_and_no_base_url_is_a_warning_for_the_workers(settings, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    (message,) = run_checks(tags=["runs"])
    assert message.id == "runs.W001"
    assert "OPENAI_API_KEY" in message.hint


def test_a_base_url_without_a_key_is_fine_the_simulator_needs_none(settings, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = "http://127.0.0.1:8765/v1"
    assert runs_ids() == []


def test_a_key_from_the_environment_counts_like_the_sdk_reads_it(settings, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    del settings.OPENAI_API_KEY
    settings.OPENAI_BASE_URL = ""
    assert runs_ids() == []


def test_a_celery_app_without_a_broker_is_an_error_naming_the_setting(host_celery_app):
    host_celery_app(result_backend="django-db")
    (message,) = run_checks(tags=["runs"])
    assert message.id == "runs.E001"
    assert "CELERY_BROKER_URL" in message.hint
    assert "namespace='CELERY'" in message.hint


def test_a_broker_from_the_environment_counts_as_celery_reads_it(host_celery_app, monkeypatch):
    host_celery_app(result_backend="django-db")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/5")
    assert runs_ids() == []


def test_no_result_backend_is_a_warning(host_celery_app):
    host_celery_app(broker_url="redis://127.0.0.1:6379/5")
    assert runs_ids() == ["runs.W002"]


@pytest.mark.parametrize("backend", ["django-db", "runs.results:DatabaseBackend"])
def test_the_django_db_backend_without_its_app_is_an_error(host_celery_app, settings, backend):
    host_celery_app(broker_url="redis://127.0.0.1:6379/5", result_backend=backend)
    apps = [app for app in settings.INSTALLED_APPS if app != "django_celery_results"]
    with override_settings(INSTALLED_APPS=apps):
        (message,) = run_checks(tags=["runs"])
    assert message.id == "runs.E002"
    assert "django_celery_results" in message.hint


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("RUNS_BACKEND", "gemini", "runs.E003"), ("RUNS_STRATEGY", "push", "runs.E004")],
)
def test_an_unknown_default_backend_or_strategy_is_an_error(settings, name, value, expected):
    setattr(settings, name, value)
    (message,) = run_checks(tags=["runs"])
    assert message.id == expected
    assert value in message.msg


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RUNS_TOOL_THREADS", 0),
        ("RUNS_TOOL_THREADS", 2.5),
        ("RUNS_SWEEP_BATCH", "1000"),
        ("RUNS_MAX_ERROR_RETRIES", -1),
        ("RUNS_WORKER_METRICS_PORT", 70000),
        ("OPENAI_TIMEOUT_S", 0),
        ("OPENAI_TIMEOUT_S", "10"),
        ("RUNS_SWEEP_INTERVAL_S", True),
        ("RUNS_DEADLINE_S", 8 * 24 * 3600),
        ("RUNS_MAX_RPS", -0.5),
    ],
)
def test_a_number_out_of_its_range_is_an_error_naming_the_setting(settings, name, value):
    setattr(settings, name, value)
    (message,) = run_checks(tags=["runs"])
    assert message.id == "runs.E005"
    assert name in message.msg and name in message.hint


@pytest.mark.parametrize(
    ("changes", "schedule"),
    [
        ({"RUNS_POLL_BASE_S": 10.0, "RUNS_POLL_CAP_S": 5.0}, "poll"),
        ({"RUNS_POLL_FACTOR": 0.5}, "poll"),
        ({"RUNS_SAFETY_NET_CAP_S": 1.0}, "webhook"),
    ],
)
def test_a_schedule_that_every_poll_would_reject_is_an_error(settings, changes, schedule):
    for name, value in changes.items():
        setattr(settings, name, value)
    (message,) = run_checks(tags=["runs"])
    assert message.id == "runs.E006"
    assert f"The {schedule} schedule" in message.msg


def test_a_jitter_of_one_breaks_both_schedules(settings):
    settings.RUNS_POLL_JITTER = 1.0
    assert runs_ids() == ["runs.E006", "runs.E006"]


def test_manage_py_check_fails_on_an_error_and_says_why(settings):
    settings.RUNS_STRATEGY = "push"
    with pytest.raises(SystemCheckError, match=r"runs\.E004"):
        call_command("check")


def test_an_api_token_entry_that_cannot_be_parsed_is_an_error_that_hides_the_secret(settings):
    settings.RUNS_API_TOKENS = ["acme:admin:s3cret-token"]  # "admin" is no scope

    messages = [m for m in run_checks(tags=["runs"]) if m.id == "runs.E401"]

    assert len(messages) == 1
    assert "s3cret-token" not in messages[0].msg + (messages[0].hint or "")


@pytest.mark.parametrize("name", ["RUNS_POLL_MODE", "RUNS_SAFETY_NET_MODE"])
def test_an_unknown_poll_mode_is_an_error(settings, name):
    setattr(settings, name, "batch")

    assert "runs.E302" in runs_ids()


def test_an_output_cap_too_small_for_its_own_marker_is_an_error(settings):
    settings.RUNS_TOOL_OUTPUT_MAX_BYTES = 10

    assert "runs.E005" in runs_ids()


def test_batched_polling_scheduled_by_the_app_is_fine(settings):
    settings.RUNS_POLL_MODE = "batched"

    assert runs_ids() == []  # runs.beat adds the runs-poll-due entry


@pytest.mark.parametrize(
    ("poll_mode", "safety_net_mode", "named"),
    [
        ("batched", "per_run", 'RUNS_POLL_MODE = "batched"'),
        ("per_run", "batched", 'RUNS_SAFETY_NET_MODE = "batched"'),  # the defaults
        ("batched", "batched", 'RUNS_POLL_MODE = "batched" and RUNS_SAFETY_NET_MODE'),
    ],
)
def test_batched_polling_without_the_apps_beat_entry_warns_that_nothing_polls(
    settings, host_celery_app, poll_mode, safety_net_mode, named
):
    settings.RUNS_POLL_MODE = poll_mode
    settings.RUNS_SAFETY_NET_MODE = safety_net_mode
    settings.RUNS_BEAT_SCHEDULE = False
    host_celery_app(broker_url="redis://127.0.0.1:6379/5", result_backend="django-db")

    (message,) = run_checks(tags=["runs"])

    assert message.id == "runs.W302"
    assert named in message.msg
    assert "runs.poll_due" in message.msg
    assert "runs-poll-due" in message.hint


def test_batched_polling_with_the_hosts_own_poll_due_entry_is_fine(settings, host_celery_app):
    settings.RUNS_POLL_MODE = "batched"
    settings.RUNS_BEAT_SCHEDULE = False
    host_celery_app(
        broker_url="redis://127.0.0.1:6379/5",
        result_backend="django-db",
        beat_schedule={"my-poll-due": {"task": "runs.poll_due", "schedule": 1.0}},
    )

    assert runs_ids() == []


def test_a_server_database_without_a_pool_warns_that_every_task_reconnects(settings):
    settings.DATABASES = {
        "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x", "OPTIONS": {}}
    }

    (message,) = run_checks(tags=["runs"])

    assert message.id == "runs.W003"
    assert "'default' has no connection pool" in message.msg
    assert "CELERY_DB_REUSE_MAX" in message.hint


def test_a_pooled_or_reused_or_sqlite_database_is_fine(settings, host_celery_app):
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}
    settings.DATABASES = {
        "default": {**postgres, "OPTIONS": {"pool": {"max_size": 20}}},
        "files": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"},
    }
    assert runs_ids() == []

    settings.DATABASES = {"default": postgres}
    host_celery_app(
        broker_url="redis://127.0.0.1:6379/5", result_backend="django-db", CELERY_DB_REUSE_MAX=100
    )
    assert runs_ids() == []


def test_a_claim_a_slow_start_can_outlast_warns_that_the_run_may_be_created_twice(settings):
    settings.OPENAI_CREATE_TIMEOUT_S, settings.RUNS_CLAIM_TIMEOUT_S = 30.0, 60.0

    (message,) = run_checks(tags=["runs"])

    assert message.id == "runs.W004"
    assert "created twice" in message.msg
    assert "above 90" in message.hint


def test_a_claim_longer_than_three_creates_is_fine(settings):
    settings.OPENAI_CREATE_TIMEOUT_S, settings.RUNS_CLAIM_TIMEOUT_S = 30.0, 91.0

    assert runs_ids() == []


def test_a_queue_no_worker_reads_by_default_is_a_warning(settings, host_celery_app):
    """A host copied the docs' RUNS_QUEUES but not their CELERY_TASK_QUEUES: a worker started
    without -Q reads only the default queue, and the starts would wait there unread."""
    settings.RUNS_QUEUES = {"start": "runs.starts", "wake": "runs.wakes"}
    host_celery_app(
        broker_url="redis://127.0.0.1:6379/5", result_backend="django-db", task_queues=None
    )
    assert "runs.W303" in runs_ids()

    host_celery_app(
        broker_url="redis://127.0.0.1:6379/5",
        result_backend="django-db",
        task_queues={name: {} for name in ("celery", "runs.starts", "runs.wakes")},
    )
    assert "runs.W303" not in runs_ids()


@pytest.mark.parametrize(
    ("broker", "options", "cap", "warned"),
    [
        ("redis://127.0.0.1:6379/5", {}, 300.0, False),
        ("redis://127.0.0.1:6379/5", {"visibility_timeout": 300}, 300.0, True),
        ("amqp://guest:guest@127.0.0.1:5672//", {}, 300.0, False),
        ("amqp://guest:guest@127.0.0.1:5672//", {}, 600.0, True),
    ],
)
def test_a_countdown_cap_past_half_the_brokers_redelivery_is_a_warning(
    settings, host_celery_app, broker, options, cap, warned
):
    """Redis redelivers an unacknowledged countdown after its visibility timeout; RabbitMQ
    closes a channel that holds one past its consumer_timeout (15 min on 3.8)."""
    settings.RUNS_MAX_COUNTDOWN_S = cap
    host_celery_app(broker_url=broker, result_backend="django-db", broker_transport_options=options)
    assert ("runs.W304" in runs_ids()) is warned
