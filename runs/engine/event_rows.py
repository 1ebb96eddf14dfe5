"""The statement that stores a webhook delivery: insert-or-ignore, settled as it goes in, and on
PostgreSQL the wake's ticket taken in the same statement.

A delivery used to cost two writes, each its own commit: the event's insert, then the run's
ticket (``bulk.bump_ticket``). Each commit waits for the WAL to reach the disk, so on PostgreSQL
the two are one statement here: a data-modifying ``WITH`` inserts the event and, when the
insert settled it ``applied``, takes the run's fresh ticket and counts the event, with the SET
and conditions of ``bulk.bump_ticket`` (``sql.wake_set``, ``sql.wakeable``). One round trip,
one commit; the caller then only enqueues the poll (``writer.send_wake``).

SQLite has no data-modifying ``WITH``: there the insert is alone and the wake takes its ticket
after it, in the same transaction (``events.record``). Batches (``batch.*`` events) wake through
their own writer and are stored the SQLite way on every database.

It sits below ``writer`` with ``bulk`` and ``claims``: the ticket is written under their rules.
"""

from __future__ import annotations

from typing import NamedTuple

from django.db import connection
from django.utils import timezone

from ..models import Batch, Run, WebhookEvent
from ..status import BATCH_TERMINAL, TERMINAL
from .sql import moment, wake_set, wakeable

Outcome = WebhookEvent.Outcome

_INSERT = """
INSERT INTO {event} (webhook_id, event_id, type, object_id, payload, created_at_remote,
                     received_at, processed_at, {run_col}, outcome)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s,
        (SELECT id FROM {run} WHERE remote_id = %s AND remote_id <> ''
          ORDER BY id DESC LIMIT 1),
        COALESCE((SELECT CASE WHEN status IN ({terminal}) THEN %s ELSE %s END
                    FROM {run} WHERE remote_id = %s AND remote_id <> ''
                   ORDER BY id DESC LIMIT 1), %s))
ON CONFLICT (webhook_id) DO NOTHING
RETURNING id, {run_col}, outcome
"""

#: The insert above, and the run's ticket taken when it settled ``applied``: the wake's own SET
#: and conditions (``sql.wake_set``, ``sql.wakeable``, as ``bulk.bump_ticket``). The UPDATE
#: cannot see the new event row (one snapshot for the whole statement), so it joins the insert's
#: RETURNING; a run that ended meanwhile fails the conditions and takes no ticket.
_INSERT_AND_WAKE = """
WITH event AS ({insert}),
     woken AS (
        UPDATE {run} AS r SET {wake_set}
          FROM event
         WHERE r.id = event.{run_col} AND event.outcome = %s AND {wakeable}
     RETURNING r.poll_generation
     )
SELECT event.id, event.{run_col}, event.outcome, (SELECT poll_generation FROM woken)
  FROM event
"""


class Stored(NamedTuple):
    """What the insert wrote: the event's id, its run's or batch's id, its outcome; and
    ``ticket``, the run's fresh ticket when this statement took it (``took_ticket``)."""

    pk: int
    found: int | None
    outcome: str
    took_ticket: bool = False
    ticket: int | None = None


def wakes_in_insert(about: type[Run] | type[Batch]) -> bool:
    """Whether ``insert_settled`` takes the ticket of the run it settles ``applied``."""
    return about is Run and connection.vendor == "postgresql"


def insert_settled(
    event: WebhookEvent, lookup: str, about: type[Run] | type[Batch] = Run
) -> Stored | None:
    """Store ``event`` unless its webhook id is stored already (then None).

    ``lookup``: the object id to settle it against ("" settles it ``ignored``); ``about``: the
    table that id is looked up in (a batch's ``batch.*`` events, a run's others). Where
    ``wakes_in_insert``, an ``applied`` event's run also has its ticket taken and its
    ``webhook_events`` counted; ``ticket`` None then means the run ended meanwhile.
    """
    quote = connection.ops.quote_name
    terminal = sorted(BATCH_TERMINAL if about is Batch else TERMINAL)
    run_col = quote(WebhookEvent._meta.get_field("batch" if about is Batch else "run").column)
    insert = _INSERT.format(
        event=quote(WebhookEvent._meta.db_table),
        run=quote(about._meta.db_table),
        run_col=run_col,
        terminal=", ".join(["%s"] * len(terminal)),
    )
    columns = ("webhook_id", "event_id", "type", "object_id", "payload", "created_at_remote")
    stamps = ("received_at", "processed_at")
    values = [
        WebhookEvent._meta.get_field(name).get_db_prep_save(getattr(event, name), connection)
        for name in (*columns, *stamps)
    ]
    otherwise = Outcome.UNKNOWN_OBJECT if lookup else Outcome.IGNORED
    params = [
        *values,
        lookup,
        *terminal,
        Outcome.STALE.value,
        Outcome.APPLIED.value,
        lookup,
        otherwise.value,
    ]
    wakes = wakes_in_insert(about)
    if wakes:
        conditions, statuses = wakeable("r.")
        sql = _INSERT_AND_WAKE.format(
            insert=insert.strip(),
            run=quote(Run._meta.db_table),
            run_col=run_col,
            wake_set=wake_set("r."),
            wakeable=conditions,
        )
        params += [moment(timezone.now()), 1, Outcome.APPLIED.value, *statuses]
    else:
        sql = insert
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return Stored(row[0], row[1], row[2], wakes, row[3] if wakes else None)
