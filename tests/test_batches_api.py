"""Batches through the JSON API and the admin, with the broker a stand-in (``sent_tasks``).

Each client sees only its own batches: another client's id is the same 404 as an unknown one,
and writes nothing. The admin shows a batch's counts, cost, next poll and runs, and cancels.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import caches
from django.urls import reverse

from runs import services
from runs.models import Batch, Run
from tests.api_client import As

pytestmark = pytest.mark.django_db

TOKENS = ["acme:operate:tok-acme", "beta:operate:tok-beta", "audit:read:tok-audit"]


@pytest.fixture(autouse=True)
def clients(settings) -> None:
    settings.RUNS_API_TOKENS = TOKENS
    caches["default"].clear()


def test_a_client_creates_a_batch_owned_by_it(acme, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = acme.post(
            "/batches",
            {"prompts": ["one", "two"], "metadata": {"customer": "c-1"}, "max_output_tokens": 64},
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    batch = Batch.objects.get(pk=body["id"])
    assert (body["status"], body["terminal"], body["cost"]) == ("pending", False, None)
    assert batch.owner == "client:acme" and batch.runs.count() == 2
    assert set(batch.runs.values_list("max_output_tokens", flat=True)) == {64}
    assert sent_tasks == [("runs.submit_batch", (batch.pk,), None)]


def test_bad_batches_are_refused_with_a_message_and_write_nothing(acme, sent_tasks, settings):
    assert acme.post("/batches", {"prompts": []}).status_code == 422
    assert acme.post("/batches", {"prompts": ["  "]}).status_code == 422
    assert acme.post("/batches", {"prompts": ["x"], "tools": ["add"]}).status_code == 422
    settings.RUNS_BATCH_MAX_RUNS = 1
    refused = acme.post("/batches", {"prompts": ["a", "b"]})
    assert refused.status_code == 400 and "1 to 1" in refused.json()["detail"]
    assert (Batch.objects.count(), Run.objects.count(), sent_tasks) == (0, 0, [])


def test_a_read_token_may_look_but_not_create(client):
    audit = As(client, "tok-audit")
    assert audit.post("/batches", {"prompts": ["x"]}).status_code == 403
    assert audit.get("/batches").status_code == 200


def test_get_and_list_show_only_the_clients_own_batches(acme, beta, sent_tasks):
    mine = services.create_batch(["a", "b", "c"], owner="client:acme")
    theirs = services.create_batch(["z"], owner="client:beta")
    Run.objects.filter(batch=mine).update(cost=Decimal("0.5"))
    Batch.objects.filter(pk=mine.pk).update(cost=Decimal("1.5"))

    detail = acme.get(f"/batches/{mine.pk}").json()
    assert detail["counts"] == {"pending": 3} and detail["cost"] == "1.50000000"
    assert "runs" not in detail  # up to 50,000: GET /api/runs?batch= pages through them
    assert acme.get(f"/batches/{theirs.pk}").status_code == 404
    assert acme.post(f"/batches/{theirs.pk}/cancel").status_code == 404
    assert Batch.objects.get(pk=theirs.pk).status == "pending"
    assert [b["id"] for b in acme.get("/batches").json()["items"]] == [mine.pk]
    assert acme.get("/batches", status="completed").json()["items"] == []


def test_a_batchs_runs_are_listed_by_the_runs_api_owner_scoped_and_paged(acme, beta, sent_tasks):
    mine = services.create_batch(["a", "b", "c"], owner="client:acme")
    services.create_batch(["d"], owner="client:acme")
    theirs = services.create_batch(["z"], owner="client:beta")
    ids = sorted(mine.runs.values_list("pk", flat=True), reverse=True)

    first = acme.get("/runs", batch=mine.pk, limit=2).json()
    assert [r["id"] for r in first["items"]] == ids[:2]
    assert {r["batch_id"] for r in first["items"]} == {mine.pk}
    rest = acme.get("/runs", batch=mine.pk, limit=2, cursor=first["next_cursor"]).json()
    assert [r["id"] for r in rest["items"]] == ids[2:] and rest["next_cursor"] is None
    assert acme.get("/runs", batch=theirs.pk).json()["items"] == []
    assert beta.get("/runs", batch=theirs.pk).json()["items"][0]["batch_id"] == theirs.pk
    assert acme.get("/runs", batch=0).status_code == 422


def test_cancel_before_it_is_sent_then_again_is_a_conflict(acme, sent_tasks):
    batch = services.create_batch(["a", "b"], owner="client:acme")
    response = acme.post(f"/batches/{batch.pk}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert set(batch.runs.values_list("status", flat=True)) == {"cancelled"}
    again = acme.post(f"/batches/{batch.pk}/cancel")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]


def test_cancel_of_a_sent_batch_hands_the_call_to_a_task(
    acme, sent_tasks, django_capture_on_commit_callbacks
):
    batch = services.create_batch(["a"], owner="client:acme")
    Batch.objects.filter(pk=batch.pk).update(remote_id="batch_1", status="in_progress")
    with django_capture_on_commit_callbacks(execute=True):
        response = acme.post(f"/batches/{batch.pk}/cancel")
    assert response.json()["status"] == "cancelling"
    assert sent_tasks[-1] == ("runs.cancel_batch", (batch.pk,), None)


def test_a_batchs_run_and_thread_take_no_message_run_or_cancel_of_their_own(acme, sent_tasks):
    """A batch sends each thread's one prompt as one line, and OpenAI cancels a batch, not a
    line: a message added to the thread would replace the prompt, a second run on it would be
    billed again at full price, a run's own cancel would cancel nothing. Each is a 409 that
    names the batch, and changes nothing."""
    batch = services.create_batch(["the prompt"], owner="client:acme")
    run = batch.runs.get()

    said = acme.post(f"/threads/{run.thread_id}/messages", {"content": "injected"})
    again = acme.post("/runs", {"thread_id": run.thread_id})
    cancel = acme.post(f"/runs/{run.pk}/cancel")

    assert [r.status_code for r in (said, again, cancel)] == [409, 409, 409]
    assert f"belongs to batch {batch.pk}" in said.json()["detail"]
    assert f"belongs to batch {batch.pk}" in again.json()["detail"]
    assert "cancel the batch" in cancel.json()["detail"]
    assert list(run.thread.messages.values_list("content", flat=True)) == ["the prompt"]
    assert list(Run.objects.values_list("pk", "status")) == [(run.pk, "pending")]
    assert sent_tasks == []


# --- the admin -----------------------------------------------------------------------------------


def test_the_batch_list_and_page_show_counts_cost_next_poll_and_runs(admin_client, sent_tasks):
    batch = services.create_batch(["a", "b"])
    Batch.objects.filter(pk=batch.pk).update(
        status="in_progress",
        remote_id="batch_1",
        request_counts={"total": 2, "completed": 1, "failed": 0},
        cost=Decimal("0.25"),
        next_poll_at=batch.created_at,
    )
    listing = admin_client.get(reverse("admin:runs_batch_changelist")).content.decode()
    assert "run-status-in_progress" in listing and "0.25" in listing
    page = admin_client.get(reverse("admin:runs_batch_change", args=(batch.pk,)))
    html = page.content.decode()
    assert "polling: 30 s x 1.5 per poll, up to every 600 s" in html
    assert f"?batch__id__exact={batch.pk}" in html and "2 pending" in html
    runs = admin_client.get(reverse("admin:runs_run_changelist"), {"batch__id__exact": batch.pk})
    assert runs.status_code == 200 and len(runs.context["cl"].result_list) == 2


def test_the_admin_cancels_selected_batches(admin_client, sent_tasks):
    batch = services.create_batch(["a"])
    response = admin_client.post(
        reverse("admin:runs_batch_changelist"),
        {"action": "cancel_selected", "_selected_action": [batch.pk]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [f"batch {batch.pk}: cancelled"]
    assert Batch.objects.get(pk=batch.pk).status == "cancelled"
