"""``manage.py chaos``: prove that no run is lost under worker kills, a Redis flush and API faults.

Exit 0 when every run ended terminal; 1 when any was lost; 2 on bad arguments.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.chaos import ChaosConfig, run_chaos

from ._args import bad


class Command(BaseCommand):
    help = "Run N runs while a private worker is SIGKILLed, Redis is flushed and 5 % of calls fail."

    def add_arguments(self, parser: CommandParser) -> None:
        d = ChaosConfig()
        parser.add_argument("--runs", type=int, default=d.runs)
        parser.add_argument("--kill-every", type=float, default=d.kill_every_s, metavar="S")
        parser.add_argument(
            "--flush-at",
            type=float,
            default=None,
            metavar="S",
            help="seconds after start to flush Redis (default: mid-run)",
        )
        parser.add_argument("--fault-rate", type=float, default=d.fault_rate)
        parser.add_argument("--slow-s", type=float, default=d.slow_s)
        parser.add_argument("--client-timeout", type=float, default=d.client_timeout_s)
        parser.add_argument("--create-timeout", type=float, default=d.create_timeout_s)
        parser.add_argument("--duration-median", type=float, default=d.duration_median_s)
        parser.add_argument("--concurrency", type=int, default=d.concurrency)
        parser.add_argument("--timeout", type=float, default=d.timeout_s)
        parser.add_argument("--strategy", choices=["poll", "webhook"], default=d.strategy)
        parser.add_argument("--seed", type=int, default=d.seed)
        parser.add_argument("--report", type=Path, help="also write the report as JSON here")

    def handle(self, *args: Any, **o: Any) -> None:
        if not 1 <= o["runs"] <= 100_000:
            raise bad("--runs must be between 1 and 100000")
        if not 0 <= o["fault_rate"] <= 1:
            raise bad("--fault-rate must be between 0 and 1")
        for name in (
            "kill_every",
            "slow_s",
            "client_timeout",
            "create_timeout",
            "duration_median",
            "timeout",
        ):
            if o[name] <= 0:
                raise bad(f"--{name.replace('_', '-')} must be positive")
        if o["concurrency"] < 1:
            raise bad("--concurrency must be at least 1")
        cfg = ChaosConfig(
            runs=o["runs"],
            kill_every_s=o["kill_every"],
            flush_at_s=o["flush_at"],
            fault_rate=o["fault_rate"],
            slow_s=o["slow_s"],
            client_timeout_s=o["client_timeout"],
            create_timeout_s=o["create_timeout"],
            duration_median_s=o["duration_median"],
            concurrency=o["concurrency"],
            timeout_s=o["timeout"],
            strategy=o["strategy"],
            seed=o["seed"],
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
            raise CommandError(f"{report.lost} of {report.runs} runs were lost", returncode=1)
        self.stdout.write(
            self.style.SUCCESS(
                f"all {report.runs} runs terminal; "
                f"{report.duplicate_creates} duplicate remote creates"
            )
        )
