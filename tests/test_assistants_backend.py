"""The Assistants backend end to end: what differs from Responses (real worker, simulator)."""

from __future__ import annotations

import pytest
from openai import OpenAI

from runs.models import Run
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
