"""``manage.py runsimulator [--port N ...]``: the local OpenAI-compatible simulator."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the local OpenAI-compatible simulator (same options as `python -m runs_simulator`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*", help="options passed to the simulator")

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after the command name belongs to the simulator's own parser.
        from runs_simulator.__main__ import main

        sys.exit(main(argv[2:]))

    def handle(self, *args: Any, **opts: Any) -> None:
        from runs_simulator.__main__ import main

        main(list(args))
