"""Strategies 1 and 2, the blocking ones: a thread per run that waits for its run to end.

Run as its own process (``python -m bench.blocking ...``) so that its CPU, memory and threads are
measured like a worker's. Both use the real ``openai`` SDK against the simulator.

1. ``tutorial``: the tutorial's loop: create a background response, then ``sleep`` 0.5 s, x1.5,
   capped at 5 s, retrieving after each sleep until the status is terminal.
2. ``sdk``: the SDK's own helper. openai 3.57 has *no* poll helper for Responses
   (``client.responses`` offers create/retrieve/cancel only); the helpers that exist are
   Assistants' ``client.beta.threads.runs.create_and_poll`` / ``poll`` (deprecated with the
   Assistants API; fixed 1 s interval unless the server sends ``openai-poll-after-ms``). So this
   strategy creates a thread and polls a run with ``create_and_poll``.

A thread that is still waiting when ``--timeout`` passes is reported as ``timeout`` and the
process exits without waiting for it (the loops themselves have no bound, as in the tutorial).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import warnings
from typing import Any

import openai

MODEL = "gpt-4.1-mini"
ASSISTANT_ID = "asst_bench"
ACTIVE = {"queued", "in_progress"}


#: The example tool ``add`` as both APIs describe it (the project registers the same one).
ADD_PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
RESPONSES_TOOLS = [
    {"type": "function", "name": "add", "description": "Add two integers.",
     "parameters": ADD_PARAMETERS, "strict": False}
]  # fmt: skip
ASSISTANTS_TOOLS = [
    {"type": "function",
     "function": {"name": "add", "description": "Add two integers.", "parameters": ADD_PARAMETERS}}
]  # fmt: skip


def _add(arguments: str) -> str:
    try:
        args = json.loads(arguments)
        return str(int(args["a"]) + int(args["b"]))
    except (ValueError, KeyError, TypeError) as exc:
        return json.dumps({"error": str(exc)})


def tutorial_loop(client: openai.OpenAI, meta: dict[str, str], record: dict[str, Any]) -> None:
    """The tutorial's blocking loop (a completed turn asking for tools gets its outputs)."""
    tools = {"tools": RESPONSES_TOOLS} if "sim_tool_rounds" in meta else {}
    response = client.responses.create(
        model=MODEL, input="Benchmark question", background=True, metadata=meta, **tools
    )
    while True:
        record["remote_id"] = response.id
        delay = 0.5
        while response.status in ACTIVE:
            time.sleep(delay)
            response = client.responses.retrieve(response.id)
            delay = min(delay * 1.5, 5.0)
        calls = [i for i in response.output or [] if i.type == "function_call"]
        if response.status != "completed" or not calls:
            break
        response = client.responses.create(
            model=MODEL,
            previous_response_id=response.id,
            background=True,
            metadata=meta,
            input=[
                {"type": "function_call_output", "call_id": c.call_id, "output": _add(c.arguments)}
                for c in calls
            ],
            **tools,
        )
    record["detected_at"] = time.time()
    record["status"] = response.status


def sdk_helper(client: openai.OpenAI, meta: dict[str, str], record: dict[str, Any]) -> None:
    """The SDK's helper: Assistants ``create_and_poll`` (there is none for Responses)."""
    thread = client.beta.threads.create()
    tools = {"tools": ASSISTANTS_TOOLS} if "sim_tool_rounds" in meta else {}
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=ASSISTANT_ID, model=MODEL, metadata=meta, **tools
    )
    answered: set[str] = set()
    while run.status == "requires_action" and run.required_action is not None:
        calls = run.required_action.submit_tool_outputs.tool_calls
        if {c.id for c in calls} <= answered:
            # The run still shows the calls we answered (it does for a moment after a submit);
            # the helper returns at once on requires_action, so wait its interval and poll again.
            time.sleep(1.0)
            run = client.beta.threads.runs.poll(run.id, thread_id=thread.id)
            continue
        answered |= {c.id for c in calls}
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[
                {"tool_call_id": c.id, "output": _add(c.function.arguments)} for c in calls
            ],
        )
    record["remote_id"] = run.id
    record["detected_at"] = time.time()
    record["status"] = run.status


STRATEGIES = {"tutorial": tutorial_loop, "sdk": sdk_helper}


def _one(strategy: str, client: openai.OpenAI, meta: dict[str, str], record: dict) -> None:
    try:
        STRATEGIES[strategy](client, meta, record)
    except Exception as exc:  # noqa: BLE001 - recorded, counted as an error in the report
        record["status"] = "error"
        record["error"] = f"{type(exc).__name__}: {exc}"[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--plans", required=True, help="JSON list of per-run metadata")
    parser.add_argument("--out", required=True)
    parser.add_argument("--progress", required=True, help="file updated with the count done")
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)  # Assistants is deprecated; we know

    with open(args.plans) as f:
        plans: list[dict[str, str]] = json.load(f)
    # The SDK's defaults (2 retries, connection pool of 1,000), as a tutorial reader has them.
    client = openai.OpenAI(base_url=args.base_url, api_key="sk-bench-simulator")
    records: list[dict[str, Any]] = [{"status": "timeout"} for _ in plans]
    threads = [
        threading.Thread(
            target=_one,
            args=(args.strategy, client, meta, records[i]),
            daemon=True,
            name=f"run-{i}",
        )
        for i, meta in enumerate(plans)
    ]
    # Start-up (imports, the client) is not the work: tell the parent, wait for its go.
    with open(args.progress + ".ready", "w") as f:
        f.write("ready")
    give_up = time.monotonic() + 60
    while not os.path.exists(args.progress + ".go") and time.monotonic() < give_up:
        time.sleep(0.02)
    started = time.time()
    for thread in threads:
        thread.start()
    give_up = time.monotonic() + args.timeout
    while time.monotonic() < give_up:
        done = sum(1 for t in threads if not t.is_alive())
        with open(args.progress, "w") as f:
            f.write(str(done))
        if done == len(threads):
            break
        time.sleep(0.5)
    with open(args.out, "w") as f:
        json.dump({"started_at": started, "threads": len(threads), "runs": records}, f)
    os._exit(0)  # threads still waiting are abandoned on purpose (reported as timeouts)


if __name__ == "__main__":
    raise SystemExit(main())
