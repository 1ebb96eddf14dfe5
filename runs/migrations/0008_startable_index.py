"""A partial index on the runs waiting to start (pending, no start claim), which a chunked start
claims oldest first (runs/engine/starts.py); built without locking the runs table (see 0004).

Not atomic, for the concurrent build.
"""

import importlib

from django.db import migrations, models

AddIndexConcurrently = importlib.import_module(
    "runs.migrations.0004_owner_index"
).AddIndexConcurrently


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("runs", "0007_round_usage_spend_index"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="run",
            index=models.Index(
                fields=["id"],
                condition=models.Q(("start_claimed_at__isnull", True), ("status", "pending")),
                name="runs_run_startable_idx",
            ),
        ),
    ]
