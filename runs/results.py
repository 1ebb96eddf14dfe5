"""A Celery result backend: django-celery-results' database backend, each result stored with
one statement.

``CELERY_RESULT_BACKEND = "runs.results:DatabaseBackend"`` keeps the same ``TaskResult`` rows as
``"django-db"`` (the admin's task history and Flower read them as before), with the same values.
What differs is how a result is written. The library's ``TaskResultManager.store_result`` makes a
``get_or_create`` and, for a task stored before, a ``save``: on PostgreSQL a read, then ``BEGIN``,
the insert and ``COMMIT``. Here it is one ``INSERT ... ON CONFLICT (task_id) DO UPDATE``
(``rawsql.upsert``). Every kept ``start_run`` stores a result, and that row was 16-19 % of a
start task's CPU samples (docs/bench/README.md, "A task's result in one statement").

Kept from the library: a failed store is tried twice more (its ``transaction_retry``), and
inside a caller's transaction the statement runs in a savepoint (as ``get_or_create``'s insert
does), so a failure leaves that transaction usable. Left to the library: a STARTED state
(``task_track_started``, whose ``date_started`` is the database's clock) and databases with no
such upsert (MySQL); everything but storing a result.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from celery import states
from django.db import connections, router, transaction
from django.utils import timezone
from django_celery_results.backends import database
from django_celery_results.managers import transaction_retry

from . import rawsql


class DatabaseBackend(database.DatabaseBackend):
    """``django-db`` with its store written as one statement (the module's docstring says why)."""

    def _store_result(
        self,
        task_id: str,
        result: Any,
        status: str,
        traceback: str | None = None,
        request: Any = None,
        using: str | None = None,
    ) -> Any:
        db = using or router.db_for_write(self.TaskModel)
        if status == states.STARTED or not rawsql.can_upsert(db):
            return super()._store_result(task_id, result, status, traceback, request, using)
        content_type, content_encoding, result = self.encode_content(result)
        meta = {
            **self._get_meta_from_request(request),
            "children": self.current_task_children(request),
        }
        _, _, encoded_meta = self.encode_content(meta)
        now = timezone.now()
        values = {
            "task_id": task_id,
            "status": status,
            "result": result,
            "traceback": traceback,
            "meta": encoded_meta,
            "content_encoding": content_encoding,
            "content_type": content_type,
            # As the library does: its extended properties (None each without result_extended,
            # traceback included) override the plain ones.
            **self._get_extended_properties(request, traceback),
            "date_created": now,
            "date_done": now,
        }
        _upsert(self.TaskModel, values, db)
        return result


@transaction_retry(max_retries=2)
def _upsert(model: type, values: dict[str, Any], db: str) -> None:
    """One statement; in a savepoint when the caller is inside a transaction."""
    savepoint = transaction.atomic(using=db) if connections[db].in_atomic_block else nullcontext()
    with savepoint:
        rawsql.upsert(model, values, unique=("task_id",), keep=("date_created",), using=db)
