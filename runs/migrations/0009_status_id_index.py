"""The runs' status index becomes (status, id), built and dropped without locking the runs table.

Why: every single run's status change is a compare-and-set, ``UPDATE ... WHERE id = %s AND
status = %s`` (``runs.states.transition``). With an index on status alone, PostgreSQL may take
that index rather than the primary key whenever its statistics call the status rare, which they
do in the burst this project is for: a table of finished runs, then 1,000 or 10,000 new ones
pending before autovacuum analyzes it again. Each status change then read every run of that
status to change one (measured: one start's status change read the 203 runs then pending;
docs/bench/README.md, "A status change's index"). On (status, id) both conditions
are the index's, so either plan reads one row; anything the old index served (a status, or a
status and an order by id) the new one serves too.

The new index is built before the old one goes, so no moment is without one. Not atomic, for
the concurrent build and drop (see 0004); either way, a run interrupted midway is finished by
running it again. The new index is larger: B-tree deduplication packs the repeated keys of an
index on status alone, and every (status, id) key is distinct.
"""

import importlib

from django.db import migrations, models

AddIndexConcurrently = importlib.import_module(
    "runs.migrations.0004_owner_index"
).AddIndexConcurrently


class RemoveIndexConcurrently(migrations.RemoveIndex):
    """``RemoveIndex`` that drops (``IF EXISTS``) and rebuilds the index concurrently on
    PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
        postgres = schema_editor.connection.vendor == "postgresql"
        schema_editor.remove_index(model, index, **({"concurrently": True} if postgres else {}))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        # Built back as 0004 builds: an index left invalid by an interrupted build is dropped
        # and built again, so a second ``migrate`` backwards finishes what the first began.
        index = to_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
        AddIndexConcurrently(model_name=self.model_name, index=index).database_forwards(
            app_label, schema_editor, from_state, to_state
        )

    def describe(self):
        return f"{super().describe()} (concurrently on PostgreSQL)"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("runs", "0008_startable_index"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="run",
            index=models.Index(fields=["status", "id"], name="runs_run_status_id_idx"),
        ),
        RemoveIndexConcurrently(model_name="run", name="runs_run_status_idx"),
    ]
