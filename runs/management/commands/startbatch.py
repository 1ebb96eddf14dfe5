"""``manage.py startbatch --file PROMPTS.txt``: one run per line, sent as one Batch API job.

Prints the batch id; ``--wait`` follows it to its end. Exit codes: 0 when every run completed,
1 when any ended otherwise (or the batch is still open at ``--timeout``), 2 on bad arguments
(a missing or empty file, a bad option: nothing is written then).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.db.models import Count
from django.utils import timezone

from runs.engine import batch_files
from runs.models import Batch
from runs.services import create_batch
from runs.status import RunStatus, Strategy

from ._args import bad, check_seconds, parse_metadata

#: How often --wait reads our own database (the worker talks to OpenAI).
WATCH_INTERVAL_S = 1.0
#: How long past the engine's own end of a batch --wait still waits for a worker to end it.
LATE = timedelta(minutes=5)


class Command(BaseCommand):
    help = "Send the prompts of a file (one a line) as one batch; with --wait, follow it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", required=True, help="a text file: one prompt a line")
        parser.add_argument("--model", help="model name (default: RUNS_DEFAULT_MODEL)")
        parser.add_argument("--instructions", default="", help="system instructions for each")
        parser.add_argument("--strategy", choices=Strategy.values)
        parser.add_argument(
            "--metadata",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="metadata pair for every run (repeatable)",
        )
        parser.add_argument("--wait", action="store_true", help="follow the batch to its end")
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="with --wait: give up after this many seconds (default: when the engine gives up)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        check_seconds("--timeout", opts["timeout"])
        prompts = read_prompts(opts["file"])
        try:
            batch = create_batch(
                prompts,
                model=opts["model"],
                instructions=opts["instructions"],
                metadata=parse_metadata(opts["metadata"]),
                strategy=opts["strategy"],
            )
        except ValidationError as exc:
            raise bad("; ".join(exc.messages)) from exc
        except DatabaseError as exc:  # nothing was created: not the broker's doing
            raise CommandError(f"the database refused the batch: {exc}") from exc
        except Exception as exc:  # kombu raises several types when the broker is down
            # The batch is saved (its submit is sent after the commit): the sweep resends it.
            raise CommandError(
                f"a batch was created but could not be queued: {exc}. Is the broker running "
                "(CELERY_BROKER_URL)? The sweep sends it once the broker answers."
            ) from exc
        self.stdout.write(f"batch {batch.pk} created ({len(prompts)} runs, {batch.model})")
        if not opts["wait"]:
            return
        counts = self._follow(batch.pk, opts["timeout"])
        ended_otherwise = {s: n for s, n in counts.items() if s != RunStatus.COMPLETED}
        if ended_otherwise:
            raise CommandError(
                f"batch {batch.pk}: not all completed: {ended_otherwise}", returncode=1
            )

    def _follow(self, batch_id: int, timeout: float | None) -> dict[str, int]:
        """Print the batch's status and its runs by status whenever they change, until it ends.
        Without ``timeout``, until the end the engine gives it (its deadline, counted from its
        create, and the grace of one writing its files: ``batch_files.grace_end``; later while a
        worker's lease on it runs), read anew each time, plus ``LATE``: a batch open past that
        has no worker following it."""
        shown = None
        end = time.monotonic() + timeout if timeout is not None else None
        while True:
            batch = Batch.objects.get(pk=batch_id)
            counts = dict(
                batch.runs.values("status").annotate(n=Count("pk")).values_list("status", "n")
            )
            line = f"{batch.status}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            if line != shown:
                self.stdout.write(f"{time.strftime('%H:%M:%S')}  {line}")
                shown = line
            if batch.is_terminal:
                break
            # A worker holding the batch (its downloads, its settle) pushes next_poll_at ahead.
            ends = [d for d in (batch_files.grace_end(batch), batch.next_poll_at) if d]
            given_up_at = max(ends) if ends else None  # none: a row without a deadline
            if end is not None and time.monotonic() > end:
                waited = f"after {timeout:.0f} s"
            elif end is None and given_up_at and timezone.now() > given_up_at + LATE:
                waited = f"past the engine's end of it ({given_up_at:%Y-%m-%d %H:%M:%S} UTC)"
            else:
                time.sleep(WATCH_INTERVAL_S)
                continue
            raise CommandError(
                f"batch {batch_id} still {batch.status} {waited} "
                "(is a worker running? `celery -A project worker`)",
                returncode=1,
            )
        if batch.cost is not None:
            self.stdout.write(f"cost: {batch.cost:f} USD")
        if batch.last_error:
            self.stdout.write(f"error ({batch.last_error_code}): {batch.last_error}")
        return counts


def read_prompts(path: str) -> list[str]:
    """The file's non-blank lines, stripped; a missing, unreadable or empty file is exit 2."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad(f"--file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(f"--file {path}: cannot read it as UTF-8 text ({exc})") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise bad(f"--file {path}: no prompts (one a line; blank lines are skipped)")
    return prompts
