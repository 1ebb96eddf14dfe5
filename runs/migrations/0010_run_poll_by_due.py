"""``Run.poll_by_due``: the run's next poll is found by ``runs.poll_due`` at its due time, and no
countdown task waits for it. Per run, for ``RUNS_POLL_MODE = "auto"`` (docs/architecture.md,
"Batched polling"), and written in every mode since.

The runs in flight whose strategy is batched now (by default webhook runs' safety nets) are
flagged here: a batch takes a flagged run whatever the modes become, so switching that strategy
to "auto" later does not leave them to the sweep. The others have countdown tasks: False.
Adding a boolean column with a constant default is a catalog change on PostgreSQL 11 and later,
with no table rewrite; the backfill touches the runs in flight only.
"""

from django.conf import settings
from django.db import migrations, models

#: The statuses of a run in flight (``runs.status.ACTIVE`` when this was written).
ACTIVE = ("pending", "queued", "in_progress", "requires_action", "cancelling")
#: Each strategy's setting and its default when this was written.
MODES = {"webhook": ("RUNS_SAFETY_NET_MODE", "batched"), "poll": ("RUNS_POLL_MODE", "per_run")}


def flag_batched_runs(apps, schema_editor):
    Run = apps.get_model("runs", "Run")
    batched = [s for s, (name, default) in MODES.items() if getattr(settings, name, default) == "batched"]
    if batched:
        Run.objects.filter(strategy__in=batched, status__in=ACTIVE).exclude(remote_id="").update(
            poll_by_due=True
        )


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0009_status_id_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="poll_by_due",
            field=models.BooleanField(
                default=False,
                help_text="The next poll is found by runs.poll_due at next_poll_at; no countdown "
                "task waits for it.",
            ),
        ),
        migrations.RunPython(flag_batched_runs, migrations.RunPython.noop),
    ]
