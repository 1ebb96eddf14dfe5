"""The Assistants backend end to end: what differs from Responses (real worker, simulator)."""

from __future__ import annotations

import pytest
from openai import OpenAI

from runs.models import Run, Thread
from runs.services import add_message, cancel_run, create_run
from runs.tasks import start_run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.usefixtures("quick_polls"),
]

QUICK = {"sim_duration_s": "0.3", "sim_queue_s": "0.05", "sim_outcome": "completed"}
#: Every call the simulator counts per object.
ACTIONS = ("create", "retrieve", "cancel", "submit_tool_outputs", "messages_create")
ACTIONS += ("messages_list",)


def server_calls(simulator, run: Run) -> int:
    """API calls the simulator saw for this run: on its remote run and its thread."""
    objects = simulator.stats()["objects"]
    mine = [objects[run.remote_id], objects[run.thread.remote_id]]
    return sum(o.get(action, 0) for o in mine for action in ACTIONS)


def test_a_run_completes_with_the_answer_from_the_thread(worker, simulator, wait_terminal):
    run = create_run("Hello, assistant", backend="assistants", metadata=QUICK)
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)

    assert run.status == "completed"
    assert run.strategy == "poll"  # no run webhooks in this API
    assert run.output_text == "Simulated answer to: Hello, assistant"
    assert run.remote_id.startswith("run_") and run.thread.remote_id.startswith("thread_")
    statuses = list(run.events.values_list("to_status", flat=True))
    assert statuses[0] == "queued" and statuses[-1] == "completed"  # a poll may skip in_progress
    # Our counter agrees with the server: thread + run create, the polls, one messages list.
    assert run.api_calls == server_calls(simulator, run) == run.polls + 3
    # The usage kept is the server's (read after the counts: this read is one more call).
    server = OpenAI(base_url=simulator.base_url, api_key="sk-test", max_retries=0)
    remote = server.beta.threads.runs.retrieve(run.remote_id, thread_id=run.thread.remote_id)
    assert run.usage == remote.usage.model_dump()


def test_a_second_run_reuses_the_thread_and_sends_only_the_new_message(
    worker, simulator, wait_terminal
):
    first = create_run("First question", backend="assistants", metadata=QUICK)
    start_run.delay(first.pk)
    first = wait_terminal(first.pk, timeout=30)
    add_message(first.thread, "Second question")
    second = create_run(thread=first.thread, metadata=QUICK)
    start_run.delay(second.pk)
    second = wait_terminal(second.pk, timeout=30)

    assert second.status == "completed"
    assert second.output_text == "Simulated answer to: Second question"
    assert simulator.stats()["objects"][first.thread.remote_id]["create"] == 1
    assert second.api_calls == second.polls + 2  # run create and messages list: no new thread


def test_a_remote_failure_keeps_its_error(worker, simulator, wait_terminal):
    run = create_run("fail", backend="assistants", metadata={**QUICK, "sim_outcome": "failed"})
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=30)
    assert run.status == "failed"
    assert run.last_error_code == "server_error" and run.last_error


def test_a_run_waiting_for_tools_past_its_expires_at_is_expired(
    worker, simulator, wait_terminal, register_tool
):
    # Left in requires_action, the API expires the run itself at expires_at (short here); the
    # waiting poll is armed for that moment rather than the long manual-wait interval.
    register_tool(name="ask_human", manual=True, description="Ask a person.")
    run = create_run(
        "Needs a person",
        backend="assistants",
        tools=["ask_human"],
        metadata={**QUICK, "sim_tool_rounds": "1", "sim_expires_s": "1.5"},
    )
    start_run.delay(run.pk)
    run = wait_terminal(run.pk, timeout=15)

    assert run.status == "expired"
    assert run.last_error_code == "run_expired"
    assert "expired at OpenAI" in run.last_error and "tool outputs" in run.last_error
    remote = simulator.stats()["objects"][run.remote_id]
    assert remote["cancel"] == 0 and remote["submit_tool_outputs"] == 0
    assert run.polls <= 4  # it waited, it did not poll on the tutorial schedule


def test_a_cancel_goes_through_cancelling(worker, simulator, wait_until, wait_terminal):
    run = create_run("long", backend="assistants", metadata={**QUICK, "sim_duration_s": "30"})
    start_run.delay(run.pk)
    run = wait_until(run.pk, lambda r: r.status == "in_progress")
    assert cancel_run(run) == "cancelling"
    run = wait_terminal(run.pk, timeout=15)
    assert run.status == "cancelled"
    assert simulator.stats()["objects"][run.remote_id]["cancel"] == 1


def test_a_create_retried_after_its_answer_was_lost_takes_the_run_it_made(
    sdk_on_simulator, make_run
):
    """The first create reached OpenAI but its answer was lost (a timeout): the retry is
    refused ("already has an active run"), and that run is this run's own, so it is taken,
    not failed, and nothing is created twice."""
    from runs.backends.assistants import AssistantsBackend

    backend = AssistantsBackend()
    run = make_run(backend="assistants", metadata=QUICK)
    thread_id = backend.create_thread(run)
    first = backend.create(run, thread_id, [])

    again = backend.create(run, thread_id, [])

    assert again.remote_id == first.remote_id
    assert again.api_calls == 2  # the refused create and the read of the run it took
    server = OpenAI(base_url=sdk_on_simulator.base_url, api_key="sk-test", max_retries=0)
    assert len(server.beta.threads.runs.list(thread_id=thread_id).data) == 1


def test_a_run_started_while_its_thread_runs_another_waits_its_turn(sdk_on_simulator, make_run):
    from runs.backends.assistants import AssistantsBackend
    from runs.errors import ThreadBusy, classify, extra_api_calls

    backend = AssistantsBackend()
    first = make_run(backend="assistants", metadata=QUICK)
    second = make_run(backend="assistants", metadata=QUICK)
    thread_id = backend.create_thread(first)
    backend.create(first, thread_id, [])

    with pytest.raises(ThreadBusy) as busy:
        backend.create(second, thread_id, [])

    decision = classify(busy.value, 0, 8)
    assert (decision.retry, decision.code) == (True, "thread_busy")
    assert extra_api_calls(busy.value) == 1  # the read of the thread's run, counted on the run


@pytest.mark.parametrize(
    ("refusal", "now", "waiting_for", "stands"),
    [
        # The run moved on before our outputs arrived: its state, not a failure.
        ('Runs in status "queued" do not accept tool outputs.', "in_progress", (), False),
        ("Run is cancelling", "cancelling", (), False),
        # Our earlier submit was taken, and the run has not moved on yet: its state too.
        ("Tool outputs already submitted", "requires_action", ("call_1",), False),
        # The run still waits for these very calls: the refusal is about our request.
        ("Invalid tool_call_id", "requires_action", ("call_1",), True),
    ],
)
def test_a_refused_tool_output_submit_reads_the_run_before_failing_it(
    monkeypatch, refusal, now, waiting_for, stands
):
    import httpx2
    import openai

    from runs.backends import assistants
    from runs.backends.base import RemoteState, ToolCallRequest, ToolOutput

    request = httpx2.Request("POST", "http://sim/v1/threads/t/runs/r/submit_tool_outputs")
    refused = openai.BadRequestError(
        refusal, response=httpx2.Response(400, request=request), body=None
    )

    class Client:
        class beta:  # noqa: N801 - the SDK's attribute path
            class threads:  # noqa: N801
                class runs:  # noqa: N801
                    @staticmethod
                    def submit_tool_outputs(**kwargs):
                        raise refused

    state = RemoteState(
        remote_id="run_1",
        status=now,
        remote_status=now,
        tool_calls=tuple(ToolCallRequest(c, "f", "{}") for c in waiting_for),
    )
    monkeypatch.setattr(assistants, "get_create_client", Client)
    monkeypatch.setattr(assistants.AssistantsBackend, "retrieve", lambda self, run: state)
    run = Run(remote_id="run_1", thread=Thread(remote_id="thread_1"))
    outputs = [ToolOutput(call_id="call_1", output="5")]

    if stands:
        with pytest.raises(openai.BadRequestError):
            assistants.AssistantsBackend().submit_tool_outputs(run, outputs)
    else:
        read = assistants.AssistantsBackend().submit_tool_outputs(run, outputs)
        assert (read.status, read.api_calls) == (now, 2)


def test_a_start_that_takes_over_its_lost_create_marks_sent_only_what_that_create_carried(
    sdk_on_simulator, db, sent_tasks
):
    """A message added while the first create's answer was lost never reached OpenAI: it stays
    unsent, for the thread's next run, instead of being dropped."""
    from datetime import timedelta

    from django.utils import timezone

    from runs.backends.assistants import AssistantsBackend
    from runs.backends.base import OutgoingMessage
    from runs.engine import lifecycle
    from runs.models import Message

    run = create_run("First question", backend="assistants", metadata=QUICK)
    backend = AssistantsBackend()
    thread_id = backend.create_thread(run)
    Thread.objects.filter(pk=run.thread_id).update(remote_id=thread_id)
    lost = backend.create(run, thread_id, [OutgoingMessage("user", "First question")])
    later = add_message(run.thread, "Added while the answer was lost")
    Message.objects.filter(pk=later.pk).update(created_at=timezone.now() + timedelta(seconds=5))

    lifecycle.start(run.pk)

    run.refresh_from_db()
    assert run.remote_id == lost.remote_id  # taken over, not created twice
    assert run.api_calls == 2  # the refused create and the read of the run it took over
    sent = dict(Message.objects.filter(thread=run.thread).values_list("content", "sent_at"))
    assert sent["First question"] is not None
    assert sent["Added while the answer was lost"] is None
