"""Safe tools, without a worker: what a model's call can and cannot make a tool do.

- arguments are validated against the tool's type hints (what its JSON schema is derived from)
  before the call: a call that does not fit is an error output and the function never runs;
- outputs are capped at ``RUNS_TOOL_OUTPUT_MAX_BYTES``, with a marker saying so;
- an exception reaches the model as "tool X failed: <class>"; operators keep the message and
  traceback, with secrets redacted;
- a tool may take its call id (``ToolCallId``), which the model never sees, to be idempotent.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import time
from concurrent.futures import Future
from typing import Any, Literal

import jsonschema
import pytest

from runs import tool_runner
from runs.storable import text_problem
from runs.tool_output import cap
from runs.tools import ToolCallId

# --- arguments are validated before the call -----------------------------------------------------


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


def forecast(
    city: str,
    days: int = 3,
    unit: Unit = Unit.C,
    detail: Literal["short", "long"] = "short",
    scale: float = 1.0,
    hourly: bool = False,
    tags: list[str] | None = None,
    window: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Weather forecast for a city (returns what it was called with)."""
    return {"city": city}


@pytest.fixture
def calls(register_tool) -> list[dict[str, Any]]:
    """``forecast``'s signature registered as a tool that records the arguments it is given."""
    received: list[dict[str, Any]] = []

    @functools.wraps(forecast)  # the same signature and hints, so the same schema and checks
    def recorded(**kwargs: Any) -> str:
        received.append(kwargs)
        return "ok"

    register_tool(recorded)
    return received


@pytest.mark.parametrize(
    ("arguments", "valid"),
    [
        ({"city": "Oslo"}, True),
        ({"city": "Oslo", "days": 5, "unit": "fahrenheit", "detail": "long"}, True),
        ({"city": "Oslo", "scale": 2, "hourly": True, "tags": ["a"], "window": [1, 2]}, True),
        ({"city": "Oslo", "tags": None}, True),
        ({}, False),  # city is required
        ({"city": 7}, False),
        ({"city": "Oslo", "days": "5"}, False),  # a string is not an integer
        ({"city": "Oslo", "days": 2.5}, False),
        ({"city": "Oslo", "days": True}, False),  # nor is a boolean
        ({"city": "Oslo", "hourly": 1}, False),
        ({"city": "Oslo", "unit": "kelvin"}, False),
        ({"city": "Oslo", "detail": "medium"}, False),
        ({"city": "Oslo", "tags": ["a", 1]}, False),
        ({"city": "Oslo", "scale": "2"}, False),
        ({"city": "Oslo", "country": "NO"}, False),  # a name the tool does not take
    ],
)
def test_validation_accepts_what_the_schema_the_model_sees_accepts(calls, arguments, valid):
    """Checked with a JSON-schema validator against the schema sent to the model (arguments it
    does not list are refused: the function could not take them)."""
    from runs.tools import get_tool

    schema = {**get_tool("forecast").parameters, "additionalProperties": False}
    assert jsonschema.Draft202012Validator(schema).is_valid(arguments) is valid

    outcome = tool_runner.execute("forecast", json.dumps(arguments), ["forecast"])

    assert outcome.ok is valid, outcome.error
    assert len(calls) == int(valid)  # an invalid call never reaches the function
    if not valid:
        assert outcome.error.startswith("invalid arguments for forecast: ")
        assert outcome.output == json.dumps({"error": outcome.error})


def test_a_string_is_not_an_integer_so_add_never_concatenates():
    outcome = tool_runner.execute("add", '{"a": "not-", "b": "an-int"}', ["add"])
    assert outcome.error == (
        "invalid arguments for add: a: Input should be a valid integer; "
        "b: Input should be a valid integer"
    )
    assert "not-an-int" not in outcome.output


def test_the_function_receives_its_declared_types_and_its_own_defaults(calls):
    outcome = tool_runner.execute(
        "forecast",
        '{"city": "Oslo", "unit": "fahrenheit", "scale": 2, "window": [1, 2]}',
        ["forecast"],
    )
    assert outcome.ok
    # Only what the model gave: forecast's own defaults apply to the rest.
    assert calls == [{"city": "Oslo", "unit": Unit.F, "scale": 2.0, "window": (1, 2)}]
    assert isinstance(calls[0]["scale"], float)


class Opaque:
    """No JSON schema, and nothing pydantic can validate from JSON."""


def test_an_explicit_schema_still_checks_the_hints_pydantic_understands(register_tool):
    def store(key: str, blob: Opaque) -> str:
        return f"{key}={blob!r}"

    schema = {"type": "object", "properties": {"key": {}, "blob": {}}, "required": ["key", "blob"]}
    register_tool(store, parameters=schema, description="Store a blob.")

    assert tool_runner.execute("store", '{"key": "k", "blob": [1]}', ["store"]).output == "k=[1]"
    refused = tool_runner.execute("store", '{"key": 1, "blob": [1]}', ["store"])
    assert refused.error == "invalid arguments for store: key: Input should be a valid string"


# --- outputs are capped --------------------------------------------------------------------------


def test_a_50_mb_output_is_cut_to_the_limit_with_a_marker(register_tool, caplog):
    def dump() -> str:
        return "x" * 52_428_800

    register_tool(dump)
    with caplog.at_level(logging.WARNING, logger="runs.tool_output"):
        outcome = tool_runner.execute("dump", "{}", ["dump"])

    assert outcome.ok  # still the tool's answer, only shorter
    # RUNS_TOOL_OUTPUT_MAX_BYTES defaults to 64 KiB
    assert outcome.output.endswith("…[truncated: 52428800 bytes, limit 65536]")
    assert len(outcome.output.encode()) == 65536
    assert "dump returned 52428800 bytes; sent 65536" in caplog.text


@pytest.mark.parametrize("limit", [100, 101, 102, 103])
def test_the_cut_falls_between_characters(limit):
    text = "é€😀" * 100  # 2-, 3- and 4-byte characters
    capped = cap(text, limit)
    assert len(capped.encode()) <= limit
    assert text.startswith(capped.split("…[truncated")[0])  # a prefix: no broken character
    assert capped.endswith(f"…[truncated: {len(text.encode())} bytes, limit {limit}]")


def test_output_within_the_limit_is_untouched_and_the_limit_is_a_setting(register_tool, settings):
    settings.RUNS_TOOL_OUTPUT_MAX_BYTES = 10

    def short() -> str:
        return "0123456789"

    def longer() -> list[int]:
        return list(range(50))

    register_tool(short)
    register_tool(longer)
    assert tool_runner.execute("short", "{}", ["short"]).output == "0123456789"
    # Smaller than the marker itself: only the marker is left, still saying what happened.
    assert tool_runner.execute("longer", "{}", ["longer"]).output == (
        "…[truncated: 190 bytes, limit 10]"
    )


def test_text_postgresql_cannot_store_reaches_the_model_and_the_record_as_u_fffd(register_tool):
    """A NUL or a lone surrogate would fail the call's write, and the call would run again until
    the run's deadline: the output keeps everything else."""

    def read_file() -> str:
        return "header\x00body \ud800 end"

    def explode() -> str:
        raise OSError("bad byte \x00 in /tmp/x")

    register_tool(read_file)
    register_tool(explode)
    out = tool_runner.execute("read_file", "{}", ["read_file"])
    failed = tool_runner.execute("explode", "{}", ["explode"])

    assert out.ok and out.output == "header\ufffdbody \ufffd end"
    assert failed.error.startswith("explode raised OSError: bad byte \ufffd in")
    for text in (out.output, failed.output, failed.error):
        assert text_problem(text) == ""


def test_a_return_value_with_no_text_is_an_error_output_not_a_crash(register_tool):
    def huge() -> int:
        return 10**5000  # past Python's limit on an integer's digits, for JSON and str alike

    register_tool(huge)
    outcome = tool_runner.execute("huge", "{}", ["huge"])

    assert not outcome.ok
    assert json.loads(outcome.output) == {
        "error": "tool huge returned a value that cannot be sent as text: ValueError"
    }


def test_arguments_nested_past_the_parsers_limit_are_refused_like_any_bad_json(register_tool):
    register_tool(lambda x: x, name="echo")
    arguments = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"

    outcome = tool_runner.execute("echo", arguments, ["echo"])

    assert not outcome.ok
    assert "arguments for echo are not valid JSON" in json.loads(outcome.output)["error"]


# --- errors: generic for the model, redacted detail for operators --------------------------------


def test_a_key_in_an_exception_reaches_neither_the_model_nor_the_record(
    register_tool, settings, caplog
):
    settings.OPENAI_API_KEY = "sk-live-configured-key-0001"

    def fetch(order_id: str) -> str:
        url = f"https://admin:pa55word@shop.example.com/orders/{order_id}?api_key=k-9f8e7d"
        raise ConnectionError(f"GET {url} failed (sent {settings.OPENAI_API_KEY})")

    register_tool(fetch)
    with caplog.at_level(logging.WARNING, logger="runs.tool_output"):
        outcome = tool_runner.execute_many(
            [tool_runner.Request("fetch", '{"order_id": "o-1"}', call_id="call_7")], ["fetch"]
        )[0]

    assert outcome.output == '{"error": "tool fetch failed: ConnectionError"}'
    assert outcome.error.startswith(
        "fetch raised ConnectionError: GET https://[redacted]@shop.example.com/orders/o-1"
        "?api_key=[redacted] failed (sent [redacted])\n\nTraceback"
    )
    assert "in fetch" in outcome.error  # the tool's own frames, for whoever debugs it
    assert "concurrent/futures" not in outcome.error  # not the worker's thread pool
    logged = caplog.text
    assert "tool fetch (call call_7) failed" in logged
    for secret in ("pa55word", "k-9f8e7d", "sk-live-configured-key-0001"):
        assert secret not in outcome.error and secret not in logged and secret not in outcome.output


def test_a_huge_exception_message_is_kept_capped_and_redacted_in_bounded_time(register_tool):
    def shout() -> str:
        raise ValueError("token=abc123 " + "A" * 52_428_800)

    register_tool(shout, timeout_s=30.0)
    started = time.monotonic()
    outcome = tool_runner.execute("shout", "{}", ["shout"])

    assert time.monotonic() - started < 5  # redaction reads a bounded window, not 50 MB
    assert outcome.error.startswith("shout raised ValueError: token=[redacted] AAAA")
    assert outcome.error.endswith("bytes, limit 65536]") and len(outcome.error.encode()) == 65536
    assert outcome.output == '{"error": "tool shout failed: ValueError"}'


@pytest.mark.parametrize(
    ("raised", "kind"),
    [(SystemExit(3), "SystemExit"), (KeyboardInterrupt(), "KeyboardInterrupt")],
)
def test_a_tool_that_exits_or_is_interrupted_fails_its_call_only(register_tool, raised, kind):
    """``sys.exit()`` inside a tool (a library's CLI entry point) is that call's failure, not the
    end of the tool task: the other calls of the round still get their outputs."""

    def quit_(reason: str) -> str:
        raise raised

    def plus(a: int, b: int) -> int:
        return a + b

    register_tool(quit_, name="quit")
    register_tool(plus)
    outcomes = tool_runner.execute_many(
        [
            tool_runner.Request("quit", '{"reason": "x"}'),
            tool_runner.Request("plus", '{"a": 2, "b": 3}'),
        ],
        ["quit", "plus"],
    )

    assert [o.output for o in outcomes] == [json.dumps({"error": f"tool quit failed: {kind}"}), "5"]
    assert outcomes[0].error.startswith(f"quit raised {kind}")
    assert tool_runner.execute("plus", '{"a": 1, "b": 1}', ["plus"]).output == "2"  # pool intact


def test_an_exception_whose_message_cannot_be_formatted_is_still_its_calls_output(register_tool):
    """Its ``__str__`` raised in the tool task: the round was left unanswered, and ran again
    once its claims expired."""

    class Odd(Exception):
        def __str__(self) -> str:
            return self.missing  # type: ignore[attr-defined]

    def odd(x: int) -> str:
        raise Odd()

    def plus(a: int, b: int) -> int:
        return a + b

    register_tool(odd)
    register_tool(plus)
    outcomes = tool_runner.execute_many(
        [tool_runner.Request("odd", '{"x": 1}'), tool_runner.Request("plus", '{"a": 2, "b": 3}')],
        ["odd", "plus"],
    )

    assert [o.output for o in outcomes] == [json.dumps({"error": "tool odd failed: Odd"}), "5"]
    assert outcomes[0].error.startswith("odd raised Odd: (its message could not be formatted)")


def test_an_interrupt_of_the_waiting_worker_is_not_taken_for_a_tool_failure(
    register_tool, monkeypatch
):
    """Raised in the worker's own thread while it waits (a time limit, a signal), it propagates:
    only what the tool itself raised becomes an output."""

    def slow() -> str:
        time.sleep(0.2)
        return "done"

    register_tool(slow)

    def interrupted(self: Future[Any], timeout: float | None = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Future, "result", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tool_runner.execute("slow", "{}", ["slow"])


# --- the call id, for idempotent tools -----------------------------------------------------------


def test_a_tool_can_take_its_call_id_without_the_model_seeing_it(register_tool):
    def send_invoice(order_id: str, call_id: ToolCallId) -> str:
        return f"invoice for {order_id}, idempotency key {call_id}"

    tool = register_tool(send_invoice)
    assert tool.parameters == {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    }
    assert tool.call_id_param == "call_id"
    sent = tool_runner.execute_many(
        [tool_runner.Request("send_invoice", '{"order_id": "o-1"}', call_id="call_42")],
        ["send_invoice"],
    )[0]
    assert sent.output == "invoice for o-1, idempotency key call_42"
    # The model cannot choose it: a call_id argument is one the schema never offered.
    forged = tool_runner.execute_many(
        [tool_runner.Request("send_invoice", '{"order_id": "o-1", "call_id": "x"}', "call_43")],
        ["send_invoice"],
    )[0]
    assert (
        forged.error
        == "invalid arguments for send_invoice: call_id: Extra inputs are not permitted"
    )
    assert send_invoice("o-2", ToolCallId("test")) == "invoice for o-2, idempotency key test"


def test_keyed_on_the_call_id_a_repeated_call_does_its_work_once(register_tool):
    """The pattern docs/tools.md shows: a worker killed after the tool ran but before the outcome
    was saved runs the call again, with the same id."""
    charged: dict[
        str, int
    ] = {}  # stands for a table with a unique key, or an API's idempotency key

    def charge(amount: int, call_id: ToolCallId) -> str:
        charged.setdefault(call_id, amount)  # insert-if-absent: a repeat changes nothing
        return f"charged {charged[call_id]}"

    register_tool(charge)
    for _ in range(2):
        outcome = tool_runner.execute_many(
            [tool_runner.Request("charge", '{"amount": 30}', call_id="call_1")], ["charge"]
        )[0]
        assert outcome.output == "charged 30"
    assert charged == {"call_1": 30}


def test_only_one_parameter_may_take_the_call_id(register_tool):
    def twice(a: ToolCallId, b: ToolCallId) -> str:
        return a + b

    with pytest.raises(TypeError, match="twice: only one parameter may be a ToolCallId"):
        register_tool(twice)
