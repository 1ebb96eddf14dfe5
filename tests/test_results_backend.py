"""``runs.results.DatabaseBackend``: django-celery-results' rows, each written with one statement.

The rows must be the ones the library's own ``django-db`` backend writes (the admin's task history
and Flower read them), on the suite's database and, where the suite runs on PostgreSQL, on its
second (SQLite) database too. The integration tests' worker stores every result through it
(``tests/test_api_through_broker.py`` reads a cancel task's).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from celery import states
from celery.app.task import Context
from django.db import DataError, connections, transaction
from django.test.utils import CaptureQueriesContext
from django_celery_results.backends import DatabaseBackend as LibraryBackend
from django_celery_results.models import TaskResult

from project.celery import app
from runs.results import DatabaseBackend

ALIASES = ["default"] + (["sqlite"] if "sqlite" in connections else [])
#: What differs between two rows stored a moment apart for two tasks.
OWN = {"id", "task_id", "date_created", "date_done"}

pytestmark = pytest.mark.django_db(databases=ALIASES)


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest) -> str:
    return request.param


def a_start(**extra: Any) -> Context:
    """The request of a ``start_run`` as the worker hands it to the backend."""
    return Context(
        id=str(uuid.uuid4()),
        task="runs.start_run",
        args=[42],
        kwargs={},
        argsrepr="(42,)",
        kwargsrepr="{}",
        hostname="starts@node-1",
        children=[],
        **extra,
    )


def row(task_id: str, alias: str) -> dict[str, Any]:
    return TaskResult.objects.using(alias).filter(task_id=task_id).values().get()


def test_the_project_stores_results_through_it():
    assert isinstance(app.backend, DatabaseBackend)


#: Sequences of states one task goes through, each state with its result and traceback.
FAILED = (states.FAILURE, ValueError("the create was refused"), "Traceback (most recent ...")
SEQUENCES = {
    "a start's result": [(states.SUCCESS, {"run_id": 42, "status": "queued"}, None)],
    "an exception": [FAILED],
    "started, then done": [(states.STARTED, None, None), (states.SUCCESS, 1, None)],
    "a retry, then done": [
        (states.RETRY, KeyError("later"), "Traceback ..."),
        (states.SUCCESS, 2, None),
    ],
    "done, then revoked": [(states.SUCCESS, 3, None), (states.REVOKED, KeyError("revoked"), None)],
}


@pytest.mark.parametrize("extended", [True, False], ids=["extended", "not extended"])
@pytest.mark.parametrize("sequence", list(SEQUENCES.values()), ids=list(SEQUENCES))
def test_a_result_is_the_row_the_library_stores(alias, sequence, extended, settings):
    """The same states stored under two task ids, one per backend: the rows are equal but for
    the id, the task id and the moments (a STARTED stamp is the library's own in both)."""
    app.conf.result_extended = extended
    try:
        ours, theirs = a_start(periodic_task_name="nightly"), a_start(periodic_task_name="nightly")
        for status, result, traceback in sequence:
            DatabaseBackend(app=app).store_result(
                ours.id, result, status, traceback, request=ours, using=alias
            )
            LibraryBackend(app=app).store_result(
                theirs.id, result, status, traceback, request=theirs, using=alias
            )
    finally:
        app.conf.result_extended = True

    mine, library = row(ours.id, alias), row(theirs.id, alias)
    moments = OWN | {"date_started"}
    assert {k: v for k, v in mine.items() if k not in moments} == {
        k: v for k, v in library.items() if k not in moments
    }
    assert (mine["date_started"] is None) == (library["date_started"] is None)
    assert mine["date_created"] <= mine["date_done"]
    if alias == "default":  # Celery reads results from the default database
        assert DatabaseBackend(app=app).get_task_meta(ours.id)["status"] == sequence[-1][0]


def test_storing_again_overwrites_the_result_and_keeps_when_it_was_created(alias):
    request, backend = a_start(), DatabaseBackend(app=app)
    ok = states.SUCCESS
    backend.store_result(request.id, {"status": "queued"}, ok, request=request, using=alias)
    first = row(request.id, alias)

    backend.store_result(request.id, {"status": "failed"}, ok, request=request, using=alias)

    again = row(request.id, alias)
    assert (again["id"], again["date_created"]) == (first["id"], first["date_created"])
    assert again["date_done"] >= first["date_done"]
    assert again["result"] == '{"status": "failed"}'
    assert TaskResult.objects.using(alias).filter(task_id=request.id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_result_is_one_statement_where_the_library_makes_a_read_and_a_transaction():
    """As a worker stores it: outside any transaction (Django's autocommit)."""
    ours, theirs = a_start(), a_start()

    with CaptureQueriesContext(connections["default"]) as one:
        DatabaseBackend(app=app).store_result(ours.id, 1, states.SUCCESS, request=ours)
    with CaptureQueriesContext(connections["default"]) as library:
        LibraryBackend(app=app).store_result(theirs.id, 1, states.SUCCESS, request=theirs)

    assert len(one) == 1
    assert "ON CONFLICT" in one[0]["sql"]
    assert len(library) >= 2  # get_or_create: a read, then the insert (in a transaction)


def test_a_started_state_is_left_to_the_library_which_stamps_it_with_the_databases_clock():
    request = a_start()

    DatabaseBackend(app=app).store_result(request.id, None, states.STARTED, request=request)

    assert row(request.id, "default")["date_started"] is not None


def test_a_database_with_no_such_upsert_gets_the_librarys_store(monkeypatch):
    features = connections["default"].features
    monkeypatch.setattr(features, "supports_update_conflicts_with_target", False)
    request = a_start()

    with CaptureQueriesContext(connections["default"]) as queries:
        DatabaseBackend(app=app).store_result(request.id, 7, states.SUCCESS, request=request)

    assert row(request.id, "default")["result"] == "7"
    assert not any("ON CONFLICT" in q["sql"] for q in queries)


@pytest.mark.django_db(transaction=True)
def test_a_failed_store_inside_a_transaction_leaves_that_transaction_usable(on_postgres):
    """As the library's ``get_or_create`` does, the statement runs in a savepoint there: a
    failure (here a task id longer than its column) is the caller's to handle, and the caller's
    transaction goes on; the store was tried three times, as the library tries."""
    request = a_start()
    request.id = "x" * 300
    with transaction.atomic():
        with pytest.raises(DataError):
            DatabaseBackend(app=app).store_result(request.id, 1, states.SUCCESS, request=request)
        TaskResult.objects.create(task_id="after-the-failure")  # the transaction still works
    assert TaskResult.objects.filter(task_id="after-the-failure").exists()
