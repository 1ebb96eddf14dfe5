"""``manage.py startrun TEXT``: create and start a run; ``--wait`` follows it to the end.

Run options (docs/api.md, "Run options"): ``--window soonest|2h|8h``, ``--service-tier``,
``--schema FILE.json`` (structured output: a JSON schema, or ``{"name", "schema", "strict"}``),
``--reasoning-effort``, ``--max-output-tokens``, ``--prompt-cache-key``, ``--safety-identifier``.

Exit codes: 0 completed, 1 any other terminal status (or still running at ``--timeout``),
2 bad arguments (an unreadable or invalid schema file, a refused option combination).
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs import options
from runs.models import Run
from runs.services import create_run
from runs.status import TERMINAL, Backend, RunStatus, Strategy
from runs.tasks import start_run

from ._args import bad, check_seconds, parse_metadata, read_schema

#: How often --wait reads our own database (not OpenAI: the worker does that).
WATCH_INTERVAL_S = 0.2


class Command(BaseCommand):
    help = "Create a run from TEXT and start it; with --wait, print each status change."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("text", help="the user message")
        parser.add_argument("--model", help="model name (default: RUNS_DEFAULT_MODEL)")
        parser.add_argument("--instructions", default="", help="system instructions")
        parser.add_argument("--backend", choices=Backend.values)
        parser.add_argument("--strategy", choices=Strategy.values)
        parser.add_argument(
            "--metadata",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="metadata pair sent with the run (repeatable)",
        )
        parser.add_argument(
            "--tool",
            action="append",
            default=[],
            dest="tools",
            metavar="NAME",
            help="a registered tool the model may call (repeatable), e.g. --tool add",
        )
        parser.add_argument("--deadline", type=float, help="seconds before the run expires")
        parser.add_argument(
            "--window",
            choices=options.WINDOWS,
            help="completion window: 2h/8h are discounted background execution (standard tier)",
        )
        parser.add_argument("--service-tier", choices=options.SERVICE_TIERS, help="e.g. flex")
        parser.add_argument(
            "--schema",
            metavar="FILE.json",
            help="structured output: a JSON schema of an object, or {name, schema, strict}",
        )
        parser.add_argument("--reasoning-effort", choices=options.REASONING_EFFORTS)
        parser.add_argument("--max-output-tokens", type=int, metavar="N")
        parser.add_argument("--prompt-cache-key", metavar="KEY")
        parser.add_argument("--safety-identifier", metavar="ID")
        parser.add_argument("--wait", action="store_true", help="follow the run to its end")
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="with --wait: give up after this many seconds (default: the deadline + 30 s)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["text"].strip():
            raise bad("TEXT must not be empty")
        check_seconds("--timeout", opts["timeout"])
        try:
            run = create_run(
                opts["text"],
                model=opts["model"],
                instructions=opts["instructions"],
                backend=opts["backend"],
                strategy=opts["strategy"],
                metadata=parse_metadata(opts["metadata"]),
                tools=opts["tools"],
                deadline_s=opts["deadline"],
                completion_window=opts["window"],
                service_tier=opts["service_tier"],
                response_format=read_schema(opts["schema"]) if opts["schema"] else None,
                reasoning_effort=opts["reasoning_effort"],
                max_output_tokens=opts["max_output_tokens"],
                prompt_cache_key=opts["prompt_cache_key"],
                safety_identifier=opts["safety_identifier"],
            )
        except ValidationError as exc:
            raise bad("; ".join(exc.messages)) from exc
        try:
            start_run.delay(run.pk)
        except Exception as exc:  # kombu raises several types when the broker is down
            raise CommandError(
                f"run {run.pk} was created but could not be queued: {exc}. "
                "Is Redis running (CELERY_BROKER_URL)?"
            ) from exc
        self.stdout.write(
            f"run {run.pk} created ({run.backend}, {run.strategy}, {run.model}, {run.mode})"
        )
        if not opts["wait"]:
            return
        timeout = opts["timeout"]
        if timeout is None:
            timeout = (run.deadline_at - run.created_at).total_seconds() + 30
        final = self._follow(run.pk, timeout)
        if final.status != RunStatus.COMPLETED:
            raise CommandError(f"run {run.pk} ended {final.status}", returncode=1)

    def _follow(self, run_id: int, timeout: float) -> Run:
        """Print each RunEvent as it is recorded, until the run is terminal."""
        seen = 0
        end = time.monotonic() + timeout
        while True:
            run = Run.objects.get(pk=run_id)
            events = list(run.events.order_by("id")[seen:])
            for event in events:
                self.stdout.write(
                    f"{event.at:%H:%M:%S.%f}"[:-3]
                    + f"  {event.from_status} -> {event.to_status}  ({event.source})"
                )
            seen += len(events)
            if run.status in TERMINAL:
                break
            if time.monotonic() > end:
                raise CommandError(
                    f"run {run_id} still {run.status} after {timeout:.0f} s "
                    "(is a worker running? `celery -A project worker`)",
                    returncode=1,
                )
            time.sleep(WATCH_INTERVAL_S)
        for call in run.tool_calls.all():
            result = f"error: {call.error}" if call.error else call.output
            self.stdout.write(f"tool {call.name}({call.arguments}) -> {result}  [{call.state}]")
        if run.parsed_output is not None:
            self.stdout.write(f"parsed: {json.dumps(run.parsed_output, ensure_ascii=False)}")
        if run.output_text:
            self.stdout.write(f"output: {run.output_text}")
        if run.last_error:
            self.stdout.write(f"error ({run.last_error_code}): {run.last_error}")
        return run
