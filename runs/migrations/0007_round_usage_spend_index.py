"""Each tool round's usage (a run's cost covers every response it made), and the index a spend
limit sums one owner's period with, built without locking the runs table (see 0004).

Not atomic, for the concurrent build; the column has a constant default, which PostgreSQL adds
without rewriting the table.
"""

import importlib

from django.db import migrations, models

AddIndexConcurrently = importlib.import_module(
    "runs.migrations.0004_owner_index"
).AddIndexConcurrently


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("runs", "0006_run_batch_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="round_usage",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Usage of each earlier tool round's response, by response id "
                "(Responses API: a round is a response of its own); the run's cost covers them "
                "and its last one.",
            ),
        ),
        AddIndexConcurrently(
            model_name="run",
            index=models.Index(fields=["owner", "created_at"], name="runs_run_owner_created_idx"),
        ),
    ]
