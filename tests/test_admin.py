"""The admin: what an operator sees of runs and what the actions do (no OpenAI involved)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from runs.models import Run, RunEvent, ToolCall

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:runs_run_changelist")


def page(run: Run) -> str:
    return reverse("admin:runs_run_change", args=(run.pk,))


def operate(run: Run, action: str) -> str:
    return reverse("admin:runs_run_operate", args=(run.pk, action))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- the list -------------------------------------------------------------------------------------


def test_the_list_shows_coloured_statuses_and_counters(admin_client, make_run):
    make_run("completed", api_calls=7, polls=5)
    make_run("queued")
    html = admin_client.get(CHANGELIST).content.decode()
    assert 'class="run-status run-status-completed"' in html
    assert 'class="run-status run-status-queued"' in html
    assert "runs/admin.css" in html
    for column in ("api calls", "polls", "webhook events", "duration"):
        assert column.lower() in html.lower()


@pytest.mark.parametrize(
    "query",
    [
        "status__exact=failed",
        "backend__exact=responses",
        "strategy__exact=poll",
        "created_at__gte=2000-01-01T00:00:00%2B00:00",
    ],
)
def test_the_list_filters(admin_client, make_run, query):
    make_run("failed")
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200


def test_the_status_filter_keeps_only_that_status(admin_client, make_run):
    failed, _ = make_run("failed"), make_run("completed")
    results = admin_client.get(f"{CHANGELIST}?status__exact=failed").context["cl"].result_list
    assert [r.pk for r in results] == [failed.pk]


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("{id}", "target"),
        ("resp_target", "target"),
        ("ticket=T-42", "target"),
        ("T-42", "target"),
        ("ticket=nope", None),
        ("7=x", "target"),  # a key that reads as a number is still a key
        ("99999999999999999999999", None),
        ("\u00b2", None),  # a digit to str.isdigit, not to int()
        ("\u2460", None),
    ],
)
def test_search_by_our_id_remote_id_or_metadata(admin_client, make_run, term, expected):
    target = make_run("completed", remote_id="resp_target", metadata={"ticket": "T-42", "7": "x"})
    make_run("completed", remote_id="resp_other", metadata={"ticket": "T-7"})
    response = admin_client.get(CHANGELIST, {"q": term.format(id=target.pk)})
    found = [r.pk for r in response.context["cl"].result_list]
    assert found == ([target.pk] if expected else [])


# --- the run page ---------------------------------------------------------------------------------


def test_the_run_page_tells_the_story(admin_client, make_run, settings):
    settings.FLOWER_URL = "http://flower.example:5555"
    run = make_run("requires_action", remote_id="resp_story")
    ToolCall.objects.create(
        run=run, call_id="call_1", name="approve_refund", arguments='{"order_id": "A1"}'
    )
    html = admin_client.get(page(run)).content.decode()
    assert 'id="run-timeline"' in html
    for change in ("pending → queued", "queued → in_progress", "in_progress → requires_action"):
        assert change in html
    assert "approve_refund() round 1" in html
    # Flower pre-filled with an exact search for this run's tasks.
    assert f"http://flower.example:5555/tasks?name=runs.%20kwargs%3Arun_id%3D{run.pk}" in html
    assert reverse("run-live", args=(run.pk,)) in html


def test_without_a_flower_url_the_run_page_says_how_to_link_flower(
    admin_client, make_run, settings
):
    settings.FLOWER_URL = ""
    html = admin_client.get(page(make_run("queued"))).content.decode()
    assert "/tasks?name=" not in html and "Tasks in Flower" not in html
    assert "set FLOWER_URL to link this run&#x27;s tasks in Flower" in html


def test_the_run_page_is_read_only(admin_client, make_run):
    run = make_run("queued")
    response = admin_client.get(page(run))
    assert response.context["has_change_permission"] is False
    assert 'name="_save"' not in response.content.decode()
    before = Run.objects.values().get(pk=run.pk)
    assert admin_client.post(page(run), {"status": "completed"}).status_code == 403
    assert Run.objects.values().get(pk=run.pk) == before
    assert admin_client.get(reverse("admin:runs_run_add")).status_code == 403


def test_other_models_are_listed_read_only(admin_client, make_run):
    run = make_run("completed")
    for name in ("thread", "toolcall", "webhookevent"):
        assert admin_client.get(reverse(f"admin:runs_{name}_changelist")).status_code == 200
    thread_page = admin_client.get(reverse("admin:runs_thread_change", args=(run.thread_id,)))
    assert "hello" in thread_page.content.decode()  # the message, inline
    runs_of_thread = admin_client.get(CHANGELIST, {"thread__id__exact": run.thread_id})
    assert [r.pk for r in runs_of_thread.context["cl"].result_list] == [run.pk]
    for name in ("thread", "toolcall", "webhookevent"):  # any text in the search box is fine
        url = reverse(f"admin:runs_{name}_changelist")
        assert admin_client.get(url, {"q": "not-a-number"}).status_code == 200


# --- actions --------------------------------------------------------------------------------------


def bulk(admin_client, action: str, *runs: Run):
    return admin_client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [r.pk for r in runs]},
        follow=True,
    )


def test_cancel_a_pending_run_ends_it_at_once(admin_client, make_run):
    run = make_run("pending")
    response = bulk(admin_client, "cancel_selected", run)
    run.refresh_from_db()
    assert run.status == "cancelled"
    event = run.events.get()
    assert (event.source, event.detail["requested_by"]) == ("user", "admin:admin")
    assert f"run {run.pk}: cancelled" in messages_of(response)


def test_cancel_an_active_run_asks_openai_from_a_task(
    admin_client, make_run, django_capture_on_commit_callbacks, sent_tasks
):
    run = make_run("in_progress", remote_id="resp_live")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(operate(run, "cancel"))
    run.refresh_from_db()
    assert run.status == "cancelling"
    assert sent_tasks == [("runs.cancel_run", (run.pk,), None)]


def test_cancel_of_an_ended_run_is_refused_and_changes_nothing(admin_client, make_run):
    run = make_run("completed")
    events = RunEvent.objects.count()
    response = bulk(admin_client, "cancel_selected", run)
    assert f"run {run.pk} already ended (completed)" in messages_of(response)
    assert Run.objects.get(pk=run.pk).status == "completed"
    assert RunEvent.objects.count() == events


def test_poll_now_takes_a_fresh_ticket_and_enqueues_a_poll(admin_client, make_run, sent_tasks):
    run = make_run("in_progress", remote_id="resp_poll")
    response = bulk(admin_client, "poll_selected", run)
    run.refresh_from_db()
    assert sent_tasks == [("runs.poll_run", (run.pk, run.poll_generation), None)]
    assert f"run {run.pk}: poll enqueued" in messages_of(response)


def test_poll_now_refuses_a_run_openai_does_not_know(admin_client, make_run, sent_tasks):
    run = make_run("pending")
    response = bulk(admin_client, "poll_selected", run)
    assert sent_tasks == []
    assert "only a run OpenAI knows" in messages_of(response)[0]


def test_retry_starts_a_new_run_with_the_same_input(
    admin_client, make_run, django_capture_on_commit_callbacks, sent_tasks
):
    old = make_run("failed", text="try me again", metadata={"ticket": "T-1"})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(operate(old, "retry"), follow=True)
    new = Run.objects.exclude(pk=old.pk).get()
    assert sent_tasks == [("runs.start_run", (new.pk,), None)]
    assert new.status == "pending" and new.thread_id != old.thread_id
    assert list(new.thread.messages.values_list("content", flat=True)) == ["try me again"]
    assert new.metadata == {"ticket": "T-1", "retry_of": str(old.pk)}
    assert f"run {old.pk} retried as run {new.pk}" in messages_of(response)


def test_retry_of_an_active_run_is_refused(admin_client, make_run):
    run = make_run("queued")
    response = bulk(admin_client, "retry_selected", run)
    assert "cancel it before retrying" in messages_of(response)[0]
    assert Run.objects.count() == 1


def manual_call(make_run) -> tuple[Run, ToolCall]:
    run = make_run("requires_action", remote_id="resp_tools")
    call = ToolCall.objects.create(
        run=run, call_id="call_m", name="approve_refund", state=ToolCall.State.MANUAL
    )
    return run, call


def test_a_manual_tool_output_is_given_on_the_run_page(
    admin_client, make_run, django_capture_on_commit_callbacks, sent_tasks
):
    run, call = manual_call(make_run)
    assert 'name="call_id" value="call_m"' in admin_client.get(page(run)).content.decode()
    url = reverse("admin:runs_run_tool_output", args=(run.pk,))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"call_id": "call_m", "output": "approved"}, follow=True)
    call.refresh_from_db()
    assert (call.state, call.output) == ("succeeded", "approved")
    assert sent_tasks == [("runs.resume_tool_round", (run.pk,), None)]
    assert "Output of approve_refund (call_m) submitted." in messages_of(response)


@pytest.mark.parametrize(
    ("call_id", "output"),
    [("", "x"), ("call_unknown", "x"), ("call_m", "a\x00b"), ("call_m\x00", "x")],
    ids=["no-call", "unknown-call", "nul-output", "nul-call-id"],
)
def test_a_bad_tool_output_is_an_error_message_and_changes_nothing(
    admin_client, make_run, call_id, output
):
    run, call = manual_call(make_run)
    url = reverse("admin:runs_run_tool_output", args=(run.pk,))
    response = admin_client.post(url, {"call_id": call_id, "output": output}, follow=True)
    assert messages_of(response)[0].startswith("Output not saved:")
    call.refresh_from_db()
    assert (call.state, call.output) == ("manual", "")


def test_viewers_see_runs_but_get_no_actions(client, make_run):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(viewer)
    run = make_run("queued")
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert "cancel_selected" not in response.content.decode()
    assert "run-cancel" not in client.get(page(run)).content.decode()
    assert client.post(operate(run, "cancel")).status_code == 403
    assert Run.objects.get(pk=run.pk).status == "queued"


@pytest.mark.parametrize(
    "url",
    [
        "/admin/runs/run/?owner=%00",
        "/admin/runs/run/?status__exact=%00",
        "/admin/runs/thread/?owner=%00",
        "/admin/runs/batch/?owner=%00",
        "/admin/runs/toolcall/?name=%00",
        "/admin/runs/webhookevent/?type__exact=%00",
    ],
)
def test_a_filter_on_text_the_database_cannot_compare_is_refused_not_a_500(admin_client, url):
    response = admin_client.get(url)

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")  # as Django answers any lookup it cannot make
