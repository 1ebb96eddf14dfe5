"""``runs.rawsql``: the start's reads and writes, written out, mean what their querysets meant.

Each test compares a written-out statement with what the ORM reads back, on the suite's database
and, where the suite runs on PostgreSQL, on its second (SQLite) database too: the two spell
datetimes differently, which is what ``get_db_prep_save`` is there for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import F, OuterRef, Value
from django.db.models.functions import Coalesce, Greatest

from runs import rawsql
from runs.models import Message, Run, Thread, WebhookEvent

MOMENT = datetime(2026, 12, 3, 9, 30, 15, 123456, tzinfo=UTC)
ALIASES = ["default"] + (["sqlite"] if "sqlite" in connections else [])

pytestmark = pytest.mark.django_db(databases=ALIASES)


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest) -> str:
    return request.param


def test_any_row_finds_only_a_row_with_every_value(alias):
    events = WebhookEvent.objects.using(alias)
    early, stale = WebhookEvent.Outcome.UNKNOWN_OBJECT, WebhookEvent.Outcome.STALE
    events.create(webhook_id="wh_1", type="response.completed", object_id="resp_1", outcome=early)

    assert rawsql.any_row(WebhookEvent, {"object_id": "resp_1", "outcome": early}, using=alias)
    assert not rawsql.any_row(WebhookEvent, {"object_id": "resp_1", "outcome": stale}, using=alias)
    assert not rawsql.any_row(WebhookEvent, {"object_id": "resp_2", "outcome": early}, using=alias)


def test_column_rows_reads_the_unset_rows_of_one_value_in_key_order(alias):
    thread, other = Thread.objects.using(alias).create(), Thread.objects.using(alias).create()
    messages = Message.objects.using(alias)
    first = messages.create(thread=thread, role="user", content="first")
    messages.create(thread=thread, role="user", content="sent", sent_at=datetime.now(UTC))
    second = messages.create(thread=thread, role="assistant", content="second")
    messages.create(thread=other, role="user", content="another thread's")

    rows = rawsql.column_rows(
        Message, ("pk", "role", "content"), {"thread_id": thread.pk}, null=("sent_at",), using=alias
    )

    assert rows == [(first.pk, "user", "first"), (second.pk, "assistant", "second")]


def test_update_writes_a_datetime_the_orm_reads_back_and_only_where_told(alias):
    thread = Thread.objects.using(alias).create()
    messages = Message.objects.using(alias)
    a, b, c = (messages.create(thread=thread, content=text) for text in "abc")
    moment = datetime(2026, 12, 3, 9, 30, 15, 123456, tzinfo=UTC)

    changed = rawsql.update(Message, {"sent_at": moment}, {}, pk_in=[a.pk, c.pk], using=alias)

    assert changed == 2
    sent = dict(messages.values_list("pk", "sent_at"))
    assert sent == {a.pk: moment, b.pk: None, c.pk: moment}
    # An equality filter on the moment matches: the same spelling as the ORM's own write.
    assert messages.filter(sent_at=moment).count() == 2


def test_update_with_a_condition_changes_only_the_rows_that_meet_it(alias):
    threads = Thread.objects.using(alias)
    unset, saved = threads.create(), threads.create(remote_id="conv_first")

    for thread in (unset, saved):
        rawsql.update(
            Thread, {"remote_id": "conv_late"}, {"pk": thread.pk, "remote_id": ""}, using=alias
        )

    assert threads.get(pk=unset.pk).remote_id == "conv_late"
    assert threads.get(pk=saved.pk).remote_id == "conv_first"


def test_update_writes_what_a_status_change_writes_as_the_orm_reads_it(alias):
    """The state machine's UPDATE: JSON, a decimal, a null, and its counters as increments of
    the row's own values (``F("api_calls") + 2``), never read and rewritten."""
    run = Run.objects.using(alias).create(
        thread=Thread.objects.using(alias).create(), model="m", api_calls=3, next_poll_at=MOMENT
    )
    values = {
        "usage": {"input_tokens": 12, "output_tokens": 3},
        "cost": Decimal("0.000123"),
        "next_poll_at": None,
        "api_calls": F("api_calls") + 2,
    }
    assert rawsql.writable(values)

    assert rawsql.update(Run, values, {"pk": run.pk, "status": "pending"}, using=alias) == 1

    saved = Run.objects.using(alias).get(pk=run.pk)
    assert (saved.usage, saved.cost) == (
        {"input_tokens": 12, "output_tokens": 3},
        Decimal("0.000123"),
    )
    assert (saved.next_poll_at, saved.api_calls) == (None, 5)


def test_a_first_value_is_set_once_then_kept(alias):
    """A stamp written as ``Coalesce(F(name), Value(v))``: set where the row has none, kept
    where it has one, in the same UPDATE and with no read (a run's ``started_at``)."""
    later = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    runs = Thread.objects.using(alias).create()
    unset = Run.objects.using(alias).create(thread=runs, model="m")
    stamped = Run.objects.using(alias).create(thread=runs, model="m", started_at=MOMENT)
    values = {"started_at": Coalesce(F("started_at"), Value(later))}
    assert rawsql.writable(values)

    for run in (unset, stamped):
        assert rawsql.update(Run, values, {"pk": run.pk}, using=alias) == 1

    assert Run.objects.using(alias).get(pk=unset.pk).started_at == later
    assert Run.objects.using(alias).get(pk=stamped.pk).started_at == MOMENT


@pytest.mark.parametrize(
    "value",
    [
        F("polls") + 1,
        F("api_calls") - 1,
        F("api_calls") + 1.5,
        OuterRef("api_calls") + 1,
        Value(1),
        Coalesce("polls", 0),
        Coalesce("api_calls", F("polls")),
        Greatest("api_calls", 0),
    ],
    ids=[
        "another column",
        "minus",
        "not an integer",
        "OuterRef",
        "Value",
        "first value of another column",
        "first value from a column",
        "a function",
    ],
)
def test_any_other_expression_is_left_to_a_queryset(value, alias):
    assert not rawsql.writable({"api_calls": value})
    with pytest.raises(ValueError, match="F\\('api_calls'\\) \\+ n"):
        rawsql.update(Run, {"api_calls": value}, {"pk": 1}, using=alias)


def test_update_of_no_ids_changes_nothing(alias):
    thread = Thread.objects.using(alias).create()
    Message.objects.using(alias).create(thread=thread, content="a")

    assert rawsql.update(Message, {"content": "b"}, {}, pk_in=[], using=alias) == 0
    assert Message.objects.using(alias).get().content == "a"


def test_a_statement_that_would_not_mean_what_it_says_is_refused(alias):
    # No condition would touch the whole table; "= NULL" would match nothing.
    with pytest.raises(ValueError, match="condition is required"):
        rawsql.update(Message, {"content": "b"}, {}, using=alias)
    with pytest.raises(ValueError, match="null="):
        rawsql.any_row(Message, {"sent_at": None}, using=alias)
    with pytest.raises(ValueError, match="at least one value"):
        rawsql.update(Message, {}, {"pk": 1}, using=alias)


def test_the_managers_written_out_methods_keep_their_meaning(db):
    thread = Thread.objects.create()
    assert Thread.objects.keep_remote_id(thread.pk, "conv_first") == "conv_first"
    # A second conversation made by a run starting at once loses: both runs use the first.
    assert Thread.objects.keep_remote_id(thread.pk, "conv_second") == "conv_first"

    message = Message.objects.create(thread=thread, content="hello")
    Message.objects.mark_sent([message.pk])
    Message.objects.mark_sent([])
    assert not Message.objects.unsent_of([thread.pk]).exists()
    # They act on the ids they are given: a filtered queryset would be a promise they ignore.
    with pytest.raises(ValueError, match="unfiltered"):
        Message.objects.filter(thread=thread).mark_sent([message.pk])


def test_upsert_inserts_then_overwrites_all_but_what_it_keeps(alias):
    runs = Run.objects.using(alias)
    run = runs.create(thread=Thread.objects.using(alias).create(), model="m")
    # A written-out INSERT fills no field's default: every NOT NULL column is named.
    required = {"event_id": "", "outcome": "received", "payload": {"a": 1}, "received_at": MOMENT}
    first = {"webhook_id": "wh_1", "type": "response.completed", "object_id": "resp_1"}
    rawsql.upsert(
        WebhookEvent, {**first, **required, "run_id": run.pk}, ("webhook_id",), using=alias
    )

    again = {"webhook_id": "wh_1", "type": "response.failed", "object_id": "resp_2"}
    rawsql.upsert(
        WebhookEvent, {**again, **required}, ("webhook_id",), keep=("object_id",), using=alias
    )

    saved = (
        WebhookEvent.objects.using(alias)
        .values("type", "object_id", "run_id", "payload", "received_at")
        .get()
    )
    assert saved == {
        "type": "response.failed",
        "object_id": "resp_1",
        "run_id": run.pk,
        "payload": {"a": 1},
        "received_at": MOMENT,
    }


def test_upsert_refuses_what_it_cannot_write_as_meant(alias, monkeypatch):
    with pytest.raises(ValueError, match="need a value"):
        rawsql.upsert(WebhookEvent, {"type": "x"}, ("webhook_id",), using=alias)
    with pytest.raises(ValueError, match="plain values"):
        rawsql.upsert(WebhookEvent, {"webhook_id": "wh", "type": Value("x")}, ("webhook_id",))
    # MySQL's upsert names no conflict target: callers ask can_upsert and do otherwise there.
    features = connections[alias].features
    monkeypatch.setattr(features, "supports_update_conflicts_with_target", False)
    assert not rawsql.can_upsert(alias)
    with pytest.raises(NotImplementedError):
        rawsql.upsert(WebhookEvent, {"webhook_id": "wh"}, ("webhook_id",), using=alias)
