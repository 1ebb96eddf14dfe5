"""``update_each``: each row its own values in one statement, as ``bulk_update`` would write them.

On PostgreSQL it is one ``UPDATE ... FROM unnest(...)`` (a chunked start's writes go through
it); elsewhere, and wherever that form would differ, ``bulk_update`` itself. These
run on whichever database the suite has, so both paths are covered where both are available.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.db.models import F

from runs.models import Run, Thread

pytestmark = pytest.mark.django_db


def test_each_row_gets_its_own_values_of_every_type(run_row):
    first, second = run_row(), run_row()
    moment = datetime(2026, 12, 3, 9, 30, 15, 123456, tzinfo=UTC)
    first.status, first.remote_id, first.next_poll_at = "queued", "resp_a", moment
    first.usage, first.cost, first.api_calls = {"input_tokens": 3}, Decimal("0.000123"), 2
    second.status, second.remote_id, second.next_poll_at = "in_progress", "resp_b", None
    second.usage, second.cost, second.api_calls = None, None, 7

    fields = ["status", "remote_id", "next_poll_at", "usage", "cost", "api_calls"]
    assert Run.objects.update_each([first, second], fields) == 2

    a, b = Run.objects.get(pk=first.pk), Run.objects.get(pk=second.pk)
    assert (a.status, a.remote_id, a.next_poll_at) == ("queued", "resp_a", moment)
    assert (a.usage, a.cost, a.api_calls) == ({"input_tokens": 3}, Decimal("0.000123"), 2)
    assert (b.status, b.remote_id, b.next_poll_at) == ("in_progress", "resp_b", None)
    assert (b.usage, b.cost, b.api_calls) == (None, None, 7)


def test_only_the_named_fields_are_written(run_row):
    run = run_row(model="kept")
    run.model, run.remote_id = "not written", "resp_1"

    Run.objects.update_each([run], ["remote_id"])

    assert Run.objects.values_list("model", "remote_id").get(pk=run.pk) == ("kept", "resp_1")


def test_the_querysets_own_filter_still_applies():
    saved, bare = Thread.objects.create(remote_id="conv_first"), Thread.objects.create()
    threads = [Thread(pk=saved.pk, remote_id="conv_late"), Thread(pk=bare.pk, remote_id="conv_b")]

    assert Thread.objects.filter(remote_id="").update_each(threads, ["remote_id"]) == 1

    assert Thread.objects.get(pk=saved.pk).remote_id == "conv_first"
    assert Thread.objects.get(pk=bare.pk).remote_id == "conv_b"


def test_an_expression_is_written_by_bulk_update(run_row):
    run = run_row(api_calls=4)
    run.api_calls = F("api_calls") + 1

    Run.objects.update_each([run], ["api_calls"])

    assert Run.objects.get(pk=run.pk).api_calls == 5


def test_nothing_to_write_sends_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert Run.objects.update_each([], ["status"]) == 0


def test_keep_remote_ids_keeps_the_first_id_saved():
    saved, bare = Thread.objects.create(remote_id="conv_first"), Thread.objects.create()

    kept = Thread.objects.keep_remote_ids({saved.pk: "conv_late", bare.pk: "conv_new"})

    assert kept == {saved.pk: "conv_first", bare.pk: "conv_new"}


def test_a_value_too_long_for_its_column_is_an_error_not_cut(run_row):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not enforce a column's length")
    run = run_row()
    run.remote_id = "r" * 200  # the column holds 128

    with pytest.raises(DataError), transaction.atomic():
        Run.objects.update_each([run], ["remote_id"])

    assert Run.objects.get(pk=run.pk).remote_id == ""


def test_a_pk_given_twice_and_a_filter_matching_nothing_behave_as_bulk_update(run_row):
    run = run_row()
    first, second = Run(pk=run.pk, remote_id="resp_1"), Run(pk=run.pk, remote_id="resp_2")

    Run.objects.update_each([first, second], ["remote_id"])
    assert Run.objects.get(pk=run.pk).remote_id == "resp_1"  # bulk_update: the first wins
    assert Run.objects.filter(pk__in=[]).update_each([second], ["remote_id"]) == 0
    assert Run.objects.get(pk=run.pk).remote_id == "resp_1"


def test_an_object_without_a_primary_key_is_refused():
    with pytest.raises(ValueError, match="primary key"):
        Run.objects.update_each([Run(remote_id="resp_1")], ["remote_id"])
