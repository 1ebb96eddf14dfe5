"""``manage.py runstatus RUN_ID``: a run's status, counters and timeline."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from runs.models import Run
from runs.schedule import describe

from ._args import bad


class Command(BaseCommand):
    help = "Show a run's status, counters, output or error, and its transition timeline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", help="our run id")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            run = Run.objects.get(pk=int(opts["run_id"]))
        except (ValueError, Run.DoesNotExist):
            raise bad(f"no run with id {opts['run_id']!r}") from None
        w = self.stdout.write
        w(f"run {run.pk}: {run.status}")
        w(f"  backend {run.backend}, strategy {run.strategy}, model {run.model}")
        w(f"  remote id {run.remote_id or '-'}, thread {run.thread_id}")
        w(f"  api calls {run.api_calls}, polls {run.polls}, webhook events {run.webhook_events}")
        w(f"  mode {run.mode}, window {run.completion_window}, cost {_usd(run.cost)}")
        if run.is_active:
            w(f"  next poll: {describe(run)}")
        if run.parsed_output is not None:
            # The structured answer, validated against the run's schema: as JSON, for jq.
            w("  parsed output:")
            w(json.dumps(run.parsed_output, indent=2, ensure_ascii=False))
        if run.output_text:
            w(f"  output: {run.output_text}")
        if run.last_error:
            w(f"  error ({run.last_error_code}): {run.last_error}")
        for call in run.tool_calls.all():
            result = f"error: {call.error}" if call.error else call.output
            w(f"  tool round {call.round}: {call.name}({call.arguments}) -> {result}")
        for event in run.events.order_by("id"):
            w(
                f"  {event.at:%Y-%m-%d %H:%M:%S.%f}"[:-3]
                + f"  {event.from_status} -> {event.to_status} ({event.source})"
            )


def _usd(cost: Any) -> str:
    return "unknown (no price for the model, or no usage yet)" if cost is None else f"${cost:f}"
