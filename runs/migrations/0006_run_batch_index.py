"""The index a batch finds its runs with, built without locking the runs table (see 0004)."""

import importlib

from django.db import migrations, models

AddIndexConcurrently = importlib.import_module(
    "runs.migrations.0004_owner_index"
).AddIndexConcurrently


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("runs", "0005_run_options_batches_cost"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="run",
            index=models.Index(fields=["batch", "status"], name="runs_run_batch_idx"),
        ),
    ]
