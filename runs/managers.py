"""Queries over runs, named for what callers ask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections, models, router
from django.utils import timezone

from . import rawsql
from .status import ACTIVE, TERMINAL


class EachQuerySet(models.QuerySet):
    def update_each(self, objs: Sequence[models.Model], fields: Sequence[str]) -> int:
        """``bulk_update(objs, fields)`` in one statement the ORM need not compile per value.

        Why: ``bulk_update`` builds a ``CASE WHEN pk = ... THEN ...`` per field and object, and
        resolving those expressions was a third of a chunked start's CPU (a py-spy profile of
        the start worker). On PostgreSQL this is one ``UPDATE ... FROM unnest(...)``: a column
        is an array of the column's type, each value prepared by its field as the ORM would.
        Everywhere else ``bulk_update`` itself: another database, a value that is an
        expression, an array field, a pk given twice, a queryset with joins, slices or a filter
        that matches nothing or everything. Either way the queryset's own filters still apply
        (``filter(remote_id="").update_each(...)`` skips rows that have one). Returns the rows
        updated.
        """
        if not objs:
            return 0
        if any(obj.pk is None for obj in objs):
            raise ValueError("All update_each() objects must have a primary key set.")
        self._for_write = True
        connection = connections[self.db]
        columns = [self.model._meta.get_field(f) for f in fields]
        values = [[getattr(obj, c.attname) for c in columns] for obj in objs]
        simple = (
            connection.vendor == "postgresql"
            and len(self.query.alias_map) <= 1
            and not self.query.is_sliced
            and len({obj.pk for obj in objs}) == len(objs)
            and not any(c.db_type(connection).endswith("]") for c in columns)
            and not any(hasattr(v, "resolve_expression") for row in values for v in row)
        )
        if simple:
            try:
                return self._update_from_arrays(connection, objs, columns, values)
            except (EmptyResultSet, FullResultSet):  # a filter Django decides without SQL
                pass
        return self.bulk_update(objs, fields)

    def _update_from_arrays(
        self,
        connection: Any,
        objs: Sequence[models.Model],
        columns: list[models.Field],
        values: list[list[Any]],
    ) -> int:
        meta = self.model._meta
        qn = connection.ops.quote_name
        pk = meta.pk
        table = qn(meta.db_table)
        where, where_params = "", []
        if self.query.where:
            compiled, where_params = self.query.get_compiler(self.db).compile(self.query.where)
            where = f" AND {compiled}"
        # A column an array: one parameter per column whatever the number of rows, so psycopg
        # splits the statement's placeholders once and caches that (it does for statements of at
        # most 50 parameters; one per value did not). Each array is cast to the column's type
        # without a length (``_unbounded``), so a value too long for its column is an error on
        # assignment, as the ORM's own UPDATE makes it, instead of being cut by the cast.
        arrays: list[list[Any]] = [[pk.get_db_prep_value(obj.pk, connection) for obj in objs]]
        arrays += [
            [c.get_db_prep_save(row[i], connection) for row in values]
            for i, c in enumerate(columns)
        ]
        names = [qn(pk.column), *(qn(c.column) for c in columns)]
        types = [pk.rel_db_type(connection), *(_unbounded(c.db_type(connection)) for c in columns)]
        unnest = ", ".join(f"%s::{t}[]" for t in types)
        sets = ", ".join(f"{qn(c.column)} = v.{qn(c.column)}" for c in columns)
        sql = (
            f"UPDATE {table} SET {sets} FROM unnest({unnest}) AS v({', '.join(names)}) "
            f"WHERE {table}.{qn(pk.column)} = v.{qn(pk.column)}{where}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*arrays, *where_params])
            return cursor.rowcount


def _unbounded(db_type: str) -> str:
    """``varchar(128)`` -> ``varchar``: an explicit cast to a bounded type cuts a long value."""
    return "varchar" if db_type.startswith("varchar(") else db_type


class RunQuerySet(EachQuerySet):
    def active(self) -> RunQuerySet:
        return self.filter(status__in=ACTIVE)

    def terminal(self) -> RunQuerySet:
        return self.filter(status__in=TERMINAL)


class ThreadQuerySet(EachQuerySet):
    def keep_remote_id(self, thread_id: int, remote_id: str) -> str:
        """Save the thread's remote id unless one is saved already; the id it keeps.

        Two runs of one thread starting at once may each create a remote conversation: the first
        saved wins and both runs use it. Every start of a new thread makes this UPDATE, so it is
        written out (``rawsql``), not compiled by the ORM each time.
        """
        unset = {"pk": thread_id, "remote_id": ""}
        if rawsql.update(self.model, {"remote_id": remote_id}, unset, using=_write_db(self)):
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


def _write_db(queryset: models.QuerySet) -> str:
    """The database alias ``queryset`` would write to, as its own ``update`` would choose it.

    For the methods that write out their statement (``rawsql``): they act on the ids they are
    given, so a filtered queryset would be a promise they ignore, and is refused.
    """
    if queryset.query.where:
        name = queryset.model.__name__
        raise ValueError(f"{name}: this method acts on the ids it is given; call it on an "
                         f"unfiltered queryset ({name}.objects)")  # fmt: skip
    return queryset._db or router.db_for_write(queryset.model, **queryset._hints)


class MessageQuerySet(models.QuerySet):
    def unsent_of(self, thread_ids: list[int]) -> MessageQuerySet:
        """The messages of these threads no run has carried to OpenAI yet, oldest first, in one
        query (a chunk of starts; one start reads its thread's with ``lifecycle.unsent_messages``,
        the same rows written out)."""
        return self.filter(thread_id__in=thread_ids, sent_at__isnull=True).order_by("id")

    def mark_sent(self, ids: list[int]) -> None:
        """Stamp these messages sent (every start does, hence a written-out UPDATE)."""
        rawsql.update(self.model, {"sent_at": timezone.now()}, {}, pk_in=ids, using=_write_db(self))
