"""``manage.py chaos``: prove that no run is lost under worker kills, a Redis flush and API faults.

Exit 0 when every run ended terminal; 1 when any was lost (the loop ended stuck or at the hang
bound); 2 on bad arguments.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.management.commands._args import bad, check_seconds
from runs_dev.chaos import ChaosConfig, run_chaos


class Command(BaseCommand):
    help = "Run N runs while a private worker is SIGKILLed, Redis is flushed and 5 % of calls fail."

    def add_arguments(self, parser: CommandParser) -> None:
        d = ChaosConfig()
        parser.add_argument("--runs", type=int, default=d.runs)
        parser.add_argument(
            "--kill-every",
            type=float,
            default=d.kill_every_s,
            metavar="S",
            help="minimum seconds between kills; a worker is killed only once it is ready and "
            "has made --kill-after-calls API calls",
        )
        parser.add_argument("--kill-after-calls", type=int, default=d.kill_after_calls, metavar="N")
        parser.add_argument(
            "--flush-at",
            type=float,
            default=None,
            metavar="S",
            help="seconds after the first worker is ready to flush Redis (default: mid-run)",
        )
        parser.add_argument("--fault-rate", type=float, default=d.fault_rate)
        parser.add_argument("--slow-s", type=float, default=d.slow_s)
        parser.add_argument("--client-timeout", type=float, default=d.client_timeout_s)
        parser.add_argument("--create-timeout", type=float, default=d.create_timeout_s)
        parser.add_argument("--duration-median", type=float, default=d.duration_median_s)
        parser.add_argument("--duration-max", type=float, default=d.duration_max_s)
        parser.add_argument(
            "--tool-share",
            type=float,
            default=d.tool_share,
            help="share of runs that call the example tool add (one or two rounds)",
        )
        parser.add_argument("--concurrency", type=int, default=d.concurrency)
        parser.add_argument(
            "--run-deadline",
            type=float,
            default=d.run_deadline_s,
            metavar="S",
            help="each run's deadline (keep it well beyond the expected time)",
        )
        parser.add_argument(
            "--stuck-after",
            type=float,
            default=d.stuck_after_s,
            metavar="S",
            help="end when no run has become terminal for this long",
        )
        parser.add_argument(
            "--timeout", type=float, default=d.timeout_s, metavar="S", help="bound on a hang"
        )
        parser.add_argument("--strategy", choices=["poll", "webhook"], default=d.strategy)
        parser.add_argument("--seed", type=int, default=d.seed)
        parser.add_argument(
            "--start-chunk", type=int, default=d.start_chunk, help="RUNS_START_CHUNK of the workers"
        )
        parser.add_argument(
            "--start-concurrency",
            type=int,
            default=d.start_concurrency,
            help="RUNS_START_CONCURRENCY of the workers",
        )
        parser.add_argument("--report", type=Path, help="also write the report as JSON here")

    def handle(self, *args: Any, **o: Any) -> None:
        if not 1 <= o["runs"] <= 100_000:
            raise bad("--runs must be between 1 and 100000")
        for name in ("fault_rate", "tool_share"):
            if not 0 <= o[name] <= 1:
                raise bad(f"--{name.replace('_', '-')} must be between 0 and 1")
        for name in (
            "kill_every",
            "slow_s",
            "client_timeout",
            "create_timeout",
            "duration_median",
            "duration_max",
            "run_deadline",
            "stuck_after",
            "timeout",
        ):
            check_seconds(f"--{name.replace('_', '-')}", o[name])
        check_seconds("--flush-at", o["flush_at"], zero_ok=True)
        for name in ("concurrency", "start_chunk", "start_concurrency"):
            if o[name] < 1:
                raise bad(f"--{name.replace('_', '-')} must be at least 1")
        if o["kill_after_calls"] < 0:
            raise bad("--kill-after-calls must not be negative")
        if o["report"]:  # before the run, not after it: a run can take up to --timeout
            try:
                o["report"].parent.mkdir(parents=True, exist_ok=True)
                with o["report"].open("a"):  # a directory or a read-only file fails here
                    pass
            except OSError as exc:
                raise bad(f"--report: cannot write {o['report']}: {exc.strerror or exc}") from None
        cfg = ChaosConfig(
            runs=o["runs"],
            kill_every_s=o["kill_every"],
            kill_after_calls=o["kill_after_calls"],
            flush_at_s=o["flush_at"],
            fault_rate=o["fault_rate"],
            slow_s=o["slow_s"],
            client_timeout_s=o["client_timeout"],
            create_timeout_s=o["create_timeout"],
            duration_median_s=o["duration_median"],
            duration_max_s=o["duration_max"],
            tool_share=o["tool_share"],
            concurrency=o["concurrency"],
            run_deadline_s=o["run_deadline"],
            stuck_after_s=o["stuck_after"],
            timeout_s=o["timeout"],
            strategy=o["strategy"],
            seed=o["seed"],
            start_chunk=o["start_chunk"],
            start_concurrency=o["start_concurrency"],
        )
        last = [0.0]

        def progress(line: str) -> None:
            if time.monotonic() - last[0] >= 2:
                self.stdout.write(line)
                last[0] = time.monotonic()

        report = run_chaos(cfg, progress)
        text = report.to_json()
        self.stdout.write(text)
        if o["report"]:
            o["report"].parent.mkdir(parents=True, exist_ok=True)
            o["report"].write_text(text + "\n")
        if report.lost:
            raise CommandError(
                f"{report.lost} of {report.runs} runs were lost (ended {report.ended})",
                returncode=1,
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"all {report.runs} runs terminal ({report.expired} expired) after "
                f"{report.kills} kills; {report.duplicate_creates} duplicate remote creates, "
                f"{report.tool_calls_answered_more_than_once} tool calls answered more than once"
            )
        )
