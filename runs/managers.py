"""Queries over runs, named for what callers ask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models
from django.utils import timezone

from .status import ACTIVE, TERMINAL


class EachQuerySet(models.QuerySet):
    def update_each(self, objs: Sequence[models.Model], fields: Sequence[str]) -> int:
        """``bulk_update(objs, fields)`` in one statement the ORM need not compile per value.

        Why: ``bulk_update`` builds a ``CASE WHEN pk = ... THEN ...`` per field and object, and
        resolving those expressions was a third of a chunked start's CPU (a py-spy profile of
        the start worker). On PostgreSQL this is one ``UPDATE ... FROM unnest(...)``: a column
        is an array of the column's type, each value prepared by its field as the ORM would.
        Elsewhere, and for a value that is an expression, it is ``bulk_update`` itself. Either
        way the queryset's own filters still apply (``filter(remote_id="").update_each(...)``
        skips rows that have one). Returns the rows updated.
        """
        if not objs:
            return 0
        connection = connections[self.db]
        values = [
            [getattr(obj, self.model._meta.get_field(f).attname) for f in fields] for obj in objs
        ]
        if (
            connection.vendor != "postgresql"
            or len(self.query.alias_map) > 1
            or any(hasattr(v, "resolve_expression") for row in values for v in row)
        ):
            return self.bulk_update(objs, fields)
        return self._update_from_values(connection, objs, fields, values)

    def _update_from_values(
        self,
        connection: Any,
        objs: Sequence[models.Model],
        fields: Sequence[str],
        values: list[list[Any]],
    ) -> int:
        meta = self.model._meta
        qn = connection.ops.quote_name
        pk = meta.pk
        columns = [meta.get_field(f) for f in fields]
        table = qn(meta.db_table)
        # A column an array: one parameter per column whatever the number of rows, so the
        # statement's text is the same for every chunk and psycopg parses it once (it caches
        # statements of at most 50 parameters).
        arrays: list[list[Any]] = [[pk.get_db_prep_value(obj.pk, connection) for obj in objs]]
        arrays += [
            [c.get_db_prep_save(row[i], connection) for row in values]
            for i, c in enumerate(columns)
        ]
        names = [qn(pk.column), *(qn(c.column) for c in columns)]
        types = [pk.rel_db_type(connection), *(c.db_type(connection) for c in columns)]
        unnest = ", ".join(f"%s::{t}[]" for t in types)
        sets = ", ".join(f"{qn(c.column)} = v.{qn(c.column)}" for c in columns)
        sql = (
            f"UPDATE {table} SET {sets} FROM unnest({unnest}) AS v({', '.join(names)}) "
            f"WHERE {table}.{qn(pk.column)} = v.{qn(pk.column)}"
        )
        params: list[Any] = list(arrays)
        if self.query.where:
            where, where_params = self.query.get_compiler(self.db).compile(self.query.where)
            sql += f" AND {where}"
            params.extend(where_params)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount


class RunQuerySet(EachQuerySet):
    def active(self) -> RunQuerySet:
        return self.filter(status__in=ACTIVE)

    def terminal(self) -> RunQuerySet:
        return self.filter(status__in=TERMINAL)


class ThreadQuerySet(EachQuerySet):
    def keep_remote_id(self, thread_id: int, remote_id: str) -> str:
        """Save the thread's remote id unless one is saved already; the id it keeps.

        Two runs of one thread starting at once may each create a remote conversation: the first
        saved wins and both runs use it.
        """
        if self.filter(pk=thread_id, remote_id="").update(remote_id=remote_id):
            return remote_id
        return self.filter(pk=thread_id).values_list("remote_id", flat=True).get()

    def keep_remote_ids(self, remote_ids: dict[int, str]) -> dict[int, str]:
        """``keep_remote_id`` for many threads in two statements (one UPDATE, one read back):
        each thread keeps the first remote id saved. The kept ids, by thread id."""
        if not remote_ids:
            return {}
        threads = [self.model(pk=pk, remote_id=rid) for pk, rid in remote_ids.items()]
        self.filter(remote_id="").update_each(threads, ["remote_id"])
        return dict(self.filter(pk__in=list(remote_ids)).values_list("pk", "remote_id"))


class MessageQuerySet(models.QuerySet):
    def unsent(self, thread_id: int) -> MessageQuerySet:
        """Messages no run has carried to OpenAI yet, oldest first."""
        return self.filter(thread_id=thread_id, sent_at__isnull=True).order_by("id")

    def unsent_of(self, thread_ids: list[int]) -> MessageQuerySet:
        """``unsent`` for several threads in one query, oldest first."""
        return self.filter(thread_id__in=thread_ids, sent_at__isnull=True).order_by("id")

    def mark_sent(self, ids: list[int]) -> None:
        if ids:
            self.filter(pk__in=ids).update(sent_at=timezone.now())
