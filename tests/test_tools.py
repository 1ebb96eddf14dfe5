"""The tool registry, tool execution and the manual-output API, without a worker.

What the model may call, what it is told about each tool, and how every way a call can go wrong
becomes an output instead of a stuck run.
"""

from __future__ import annotations

import enum
import threading
from typing import Literal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import close_old_connections

from runs import tool_runner, tools
from runs.models import Run, ToolCall
from runs.services import create_run, owed_tool_calls, submit_tool_output

# --- describing tools ----------------------------------------------------------------------------


def test_the_dev_app_registers_the_example_tools():
    """``runs_dev`` (installed in the demo project) registers them; ``runs`` registers none."""
    assert {"add", "utc_now"} <= set(tools.registered())
    assert tools.get_tool("add").func.__module__ == "runs_dev.example_tools"
    assert tools.get_tool("add").responses_spec() == {
        "type": "function",
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
        "strict": False,
    }


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


def test_the_schema_comes_from_the_type_hints(register_tool):
    def forecast(
        city: str,
        days: int = 3,
        unit: Unit = Unit.C,
        detail: Literal["short", "long"] = "short",
        tags: list[str] | None = None,
        options: dict[str, float] | None = None,
    ) -> str:
        """Weather forecast for a city.

        Longer notes for people reading the code are not sent to the model.
        """
        return city

    tool = register_tool(forecast)
    assert tool.description == "Weather forecast for a city."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "detail": {"enum": ["short", "long"]},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
            "options": {"anyOf": [{"type": "object"}, {"type": "null"}]},
        },
        "required": ["city"],
    }
    assert tool.assistants_spec()["function"]["parameters"] == tool.parameters


def test_a_hint_without_a_json_schema_asks_for_an_explicit_one(register_tool):
    def upload(data: bytes) -> str:
        return ""

    with pytest.raises(TypeError, match="upload: parameter 'data'.*pass parameters= explicitly"):
        register_tool(upload)
    schema = {"type": "object", "properties": {"data": {"type": "string", "format": "byte"}}}
    assert register_tool(upload, parameters=schema, description="Upload.").parameters == schema


def test_names_follow_openai_rules_and_are_not_silently_replaced(register_tool):
    def ping() -> str:
        return "pong"

    def other_ping() -> str:
        return "PONG"

    with pytest.raises(ValueError, match="must be 1-64 letters"):
        register_tool(ping, name="no spaces")
    register_tool(ping)
    register_tool(ping)  # the same function again (a module imported twice) is fine
    with pytest.raises(ValueError, match="a different tool is already registered as 'ping'"):
        register_tool(other_ping, name="ping")
    assert register_tool(other_ping, name="ping", replace=True).func is other_ping
    tools.unregister("ping")
    assert tools.get_tool("ping") is None


def test_a_manual_tool_needs_no_function(register_tool):
    tool = register_tool(name="approve", manual=True, description="A person approves.")
    assert tool.manual and tool.func is None
    assert tool.parameters == {"type": "object", "properties": {}, "required": []}
    with pytest.raises(TypeError, match="only a manual tool"):
        tools.register(name="nothing")


def test_the_decorator_returns_the_function_unchanged():
    @tools.tool(timeout_s=1.5)
    def double(x: int) -> int:
        """Double it."""
        return 2 * x

    try:
        assert double(4) == 8
        assert tools.get_tool("double").timeout_s == 1.5
    finally:
        tools.unregister("double")


@pytest.mark.django_db
def test_create_run_accepts_only_registered_tool_names():
    with pytest.raises(ValidationError, match="unknown tool 'nope'; registered tools: .*add"):
        create_run("hi", tools=["add", "nope"])
    with pytest.raises(ValidationError, match="a list of registered tool names"):
        create_run("hi", tools="add")
    assert not Run.objects.exists()
    assert create_run("hi", tools=["add", "utc_now", "add"]).tools == ["add", "utc_now"]


def test_startrun_refuses_an_unknown_tool_with_exit_code_2(db):
    with pytest.raises(CommandError, match="unknown tool 'nope'") as caught:
        call_command("startrun", "hi", "--tool", "add", "--tool", "nope")
    assert caught.value.returncode == 2
    assert not Run.objects.exists()


# --- executing one call --------------------------------------------------------------------------


def test_a_result_is_sent_as_text_and_structured_results_as_json(register_tool):
    def stats(values: list[float]) -> dict[str, float]:
        return {"min": min(values), "max": max(values)}

    register_tool(stats)
    assert tool_runner.execute("add", '{"a": 2, "b": 3}', ["add"]).output == "5"
    outcome = tool_runner.execute("stats", '{"values": [3, 1, 2]}', ["stats"])
    # The arguments were validated into the declared types first: list[float] holds floats.
    assert outcome.ok and outcome.output == '{"min": 1.0, "max": 3.0}'


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("add", '{"a": 2', "arguments for add are not valid JSON (Expecting ',' delimiter"),
        ("add", "[2, 3]", "arguments for add must be a JSON object, got '[2, 3]'"),
        (
            "add",
            '{"a": 2, "c": 3}',
            "invalid arguments for add: b: Field required; c: Extra inputs are not permitted",
        ),
        ("add", '{"a": "not-", "b": "an-int"}', "invalid arguments for add: a: Input should be"),
        ("launch", "{}", "unknown tool 'launch'; this run offers: add"),
        ("utc_now", "{}", "unknown tool 'utc_now'; this run offers: add"),  # not offered
    ],
)
def test_every_bad_call_becomes_an_error_output(name, arguments, error):
    outcome = tool_runner.execute(name, arguments, ["add"])
    assert not outcome.ok
    assert outcome.error.startswith(error)
    assert outcome.output.startswith('{"error": ')


def test_an_exception_becomes_an_error_output(register_tool):
    def divide(a: int, b: int) -> float:
        return a / b

    register_tool(divide)
    outcome = tool_runner.execute("divide", '{"a": 1, "b": 0}', ["divide"])
    # The model reads what failed, not the message; operators keep the message and traceback.
    assert outcome.output == '{"error": "tool divide failed: ZeroDivisionError"}'
    assert outcome.error.startswith("divide raised ZeroDivisionError: division by zero\n")
    assert "in divide\n    return a / b" in outcome.error


def test_a_slow_tool_is_abandoned_at_its_timeout(register_tool):
    release, returned = threading.Event(), threading.Event()

    def slow() -> str:
        release.wait(60)  # released by the test once the call is answered
        returned.set()
        return "late"

    register_tool(slow, timeout_s=0.2)
    try:
        outcome = tool_runner.execute("slow", "{}", ["slow"])
        tool_still_running = not returned.is_set()
    finally:
        release.set()
    assert outcome.error == "slow did not finish within 0.2 s"
    assert tool_still_running  # answered at the timeout, not when the tool returned


def test_parallel_calls_run_side_by_side(register_tool):
    # Three calls meet at a barrier: it opens only if all three are running at the same time. Run
    # one after another, the first would wait alone until the barrier broke (an error output).
    barrier = threading.Barrier(3)

    def meet() -> str:
        barrier.wait(timeout=10)  # bounds a hang; well inside the tool's own timeout
        return "met"

    register_tool(meet, timeout_s=30.0)
    outcomes = tool_runner.execute_many(
        [tool_runner.Request("meet", "{}")] * 3 + [tool_runner.Request("x", "{}")], ["meet"]
    )
    assert [(o.ok, o.output) for o in outcomes[:3]] == [(True, "met")] * 3
    assert outcomes[3].error.startswith("unknown tool 'x'")


# --- manual outputs through the Python API --------------------------------------------------------


@pytest.fixture
def waiting_run(db, register_tool) -> Run:
    """A run that asked for a manual tool and an automatic one (already answered)."""
    register_tool(name="approve", manual=True, description="A person approves.")
    run = create_run("refund?", tools=["approve", "add"])
    Run.objects.filter(pk=run.pk).update(status="requires_action", remote_id="resp_1")
    ToolCall.objects.create(run=run, call_id="call_m", name="approve", state="manual")
    ToolCall.objects.create(run=run, call_id="call_a", name="add", state="succeeded", output="5")
    run.refresh_from_db()
    return run


def test_the_last_owed_output_submits_the_round_after_commit(
    waiting_run, django_capture_on_commit_callbacks
):
    assert [c.call_id for c in owed_tool_calls(waiting_run)] == ["call_m"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call = submit_tool_output(waiting_run, "call_m", "approved")
    assert (call.state, call.output) == ("succeeded", "approved")
    assert len(callbacks) == 1  # runs.resume_tool_round, enqueued once the answer is committed
    assert owed_tool_calls(waiting_run) == []


@pytest.mark.parametrize(
    ("call_id", "output", "message"),
    [
        ("call_m", {"ok": True}, "the output must be a string \\(serialise structured results"),
        ("call_x", "yes", "has no tool call 'call_x'"),
        ("call_a", "yes", "tool call call_a of run .* was already answered \\(succeeded\\)"),
        ("", "yes", "call_id must be the id of one of the run's tool calls"),
        ("call_m", "é" * 40_000, "80,000 bytes, over RUNS_TOOL_OUTPUT_MAX_BYTES \\(65,536\\)"),
    ],
)
def test_bad_manual_outputs_are_refused_and_change_nothing(
    waiting_run, django_capture_on_commit_callbacks, call_id, output, message
):
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(ValidationError, match=message),
    ):
        submit_tool_output(waiting_run, call_id, output)
    assert callbacks == []
    assert ToolCall.objects.get(call_id="call_m").state == "manual"
    assert ToolCall.objects.get(call_id="call_a").output == "5"


def test_a_run_not_waiting_for_outputs_refuses_them(waiting_run):
    Run.objects.filter(pk=waiting_run.pk).update(status="expired")
    with pytest.raises(ValidationError, match="is expired, not waiting for tool outputs"):
        submit_tool_output(waiting_run, "call_m", "approved")
    assert ToolCall.objects.get(call_id="call_m").state == "manual"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
@pytest.mark.parametrize("attempt", range(3))
def test_two_tasks_finding_a_round_complete_claim_it_once(attempt, register_tool):
    """The person's resume task and a poll both see every output in: exactly one submits."""
    from runs.engine.tool_calls import Step, next_step

    register_tool(name="approve", manual=True)
    run = create_run("refund?", tools=["approve"])
    Run.objects.filter(pk=run.pk).update(status="requires_action", remote_id="resp_1")
    ToolCall.objects.create(run=run, call_id="call_m", name="approve", state="succeeded")
    barrier = threading.Barrier(2)
    decisions: list[Step] = []

    def claim() -> None:
        try:
            barrier.wait()
            decisions.append(next_step(run.pk, 1).step)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(d.value for d in decisions) == ["outputs_already_sent", "submit"]


def test_a_tool_can_read_the_call_id_it_answers(register_tool):
    """Tools must be idempotent by call id: a repeat after a dead worker has the same id."""
    from runs.tools import current_call_id

    register_tool(current_call_id, name="whoami")
    outcome = tool_runner.execute_many(
        [tool_runner.Request("whoami", "{}", call_id="call_42")], allowed=["whoami"]
    )[0]
    assert (outcome.output, outcome.error) == ("call_42", "")
    assert current_call_id() == ""  # nothing leaks out of the call


@pytest.mark.parametrize(
    ("status", "cancel_remotely", "cancel_again"),
    [("cancelled", ["resp_new"], []), ("expired", ["resp_new"], []), ("cancelling", [], [True])],
)
@pytest.mark.django_db
def test_a_submit_that_answers_after_the_run_was_cancelled_leaves_no_response_running(
    run_row, monkeypatch, sent_tasks, status, cancel_remotely, cancel_again
):
    """Responses: the outputs' submit makes a new response, and a cancel (or the deadline) moved
    the run on while the submit was under way. An ended run keeps the response it had, and the
    new one, which nothing would follow, is cancelled at OpenAI; a run still cancelling takes the
    new one, and its cancel is sent again (the first may have gone to the completed response)."""
    from runs.engine import answers
    from runs.engine.decisions import Decision, Move

    run = run_row(status, remote_id="resp_old")
    submitted = Decision(
        run.pk,
        "in_progress",
        move=Move(
            "in_progress", "tool", expected="requires_action", fields={"remote_id": "resp_new"}
        ),
        remote_id="resp_new",
        submitted_calls=(0,),
    )
    cancelled: list[str] = []
    monkeypatch.setattr(answers, "cancel_remote_quietly", lambda r: cancelled.append(r.remote_id))

    answers.conclude(run, submitted)

    run.refresh_from_db()
    assert run.status == status
    assert run.remote_id == ("resp_new" if status == "cancelling" else "resp_old")
    assert cancelled == cancel_remotely
    resent = [args == (run.pk,) for name, args, _ in sent_tasks if name == "runs.cancel_run"]
    assert resent == cancel_again
