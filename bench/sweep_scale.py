"""How long one recovery sweep takes with 100,000 runs in the table (PostgreSQL).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/runs_sweepbench \\
        .venv/bin/python bench/sweep_scale.py [--rows 100000]

Creates the rows (most terminal, some active on time, some overdue, some pending), then times
``runs.engine.sweep.sweep()`` with the enqueueing replaced by counters (the sweep's own cost is the
database work; enqueueing is one Redis write per recovered run). Writes docs/bench/sweep.json
and docs/bench/sweep.md, including the query plan of the overdue-poll query.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from runs.engine import enqueue, writer
    from runs.engine import sweep as sweep_module
    from runs.models import Run, Thread

    if connection.vendor != "postgresql":
        sys.exit("use a PostgreSQL DATABASE_URL: the point is the query plan at scale")
    call_command("migrate", verbosity=0)
    Run.objects.all().delete()
    Thread.objects.all().delete()
    thread = Thread.objects.create()
    now = timezone.now()
    mix = {"terminal": 0.97, "active_on_time": 0.02, "overdue": 0.005, "pending_lost": 0.005}
    rows = []
    for i in range(args.rows):
        x = i / args.rows
        if x < mix["terminal"]:
            rows.append(Run(thread=thread, model="m", status="completed", remote_id=f"r{i}"))
        elif x < mix["terminal"] + mix["active_on_time"]:
            rows.append(
                Run(
                    thread=thread,
                    model="m",
                    status="in_progress",
                    remote_id=f"r{i}",
                    next_poll_at=now + timedelta(seconds=30),
                )
            )
        elif x < 1 - mix["pending_lost"]:
            rows.append(
                Run(
                    thread=thread,
                    model="m",
                    status="in_progress",
                    remote_id=f"r{i}",
                    next_poll_at=now - timedelta(seconds=60),
                )
            )
        else:
            rows.append(Run(thread=thread, model="m", status="pending"))
    t0 = time.perf_counter()
    Run.objects.bulk_create(rows, batch_size=5000)
    Run.objects.filter(status="pending").update(
        created_at=now - timedelta(seconds=60), deadline_at=now + timedelta(hours=1)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE runs_run")
    insert_s = time.perf_counter() - t0

    counts = {"woken": 0, "started": 0}
    writer.wake = lambda run_id, **_: counts.__setitem__("woken", counts["woken"] + 1) or True
    enqueue.send = lambda name, *args, **_: counts.__setitem__("started", counts["started"] + 1)

    timings = []
    report = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        report = sweep_module.sweep()
        timings.append(time.perf_counter() - t0)

    sql, params = (
        Run.objects.filter(
            status__in=["queued", "in_progress", "requires_action", "cancelling"],
            next_poll_at__lt=now,
        )
        .exclude(remote_id="")
        .order_by("next_poll_at")
        .values_list("pk", flat=True)[:1000]
        .query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN ANALYZE " + sql, params)
        plan = [row[0] for row in cursor.fetchall()]

    result = {
        "rows": args.rows,
        "mix": mix,
        "insert_s": round(insert_s, 2),
        "sweep_ms": [round(t * 1000, 1) for t in timings],
        "sweep_ms_median": round(median(timings) * 1000, 1),
        "per_sweep": report.as_dict() if report else {},
        "overdue_query_plan": plan,
    }
    out = ROOT / "docs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Recovery sweep at {args.rows:,} runs (PostgreSQL)",
        "",
        "| figure | value |",
        "|---|---|",
        f"| rows | {args.rows:,} ({', '.join(f'{k} {v:.1%}' for k, v in mix.items())}) |",
        f"| one sweep, median of {args.repeat} | {result['sweep_ms_median']} ms |",
        f"| all sweeps | {', '.join(str(t) for t in result['sweep_ms'])} ms |",
        f"| recovered per sweep | {result['per_sweep']} |",
        "",
        "Query plan of the overdue-poll query:",
        "",
        "```",
        *plan,
        "```",
    ]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
