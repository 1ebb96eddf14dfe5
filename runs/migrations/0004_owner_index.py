"""The index the API lists one owner's runs with, built without locking the runs table.

Why a migration of its own, and not atomic: on PostgreSQL a plain ``CREATE INDEX`` blocks every
write to ``runs_run`` until the index is built (minutes on a large table, during which no run can
be started, polled or finished), and ``CREATE INDEX CONCURRENTLY`` cannot run inside a
transaction. Elsewhere (SQLite for the demo, MySQL/InnoDB, which builds indexes online) the plain
operation is used. ``django.contrib.postgres`` has such an operation too, but importing it needs
psycopg, which a host on SQLite or MySQL does not install.

A database that ran an earlier revision of 0003 already has the index: it is left as it is. On
PostgreSQL an *invalid* index of that name (a concurrent build that was interrupted) is dropped
and built again, so re-running the migration after a failure repairs it.
"""

from django.db import migrations, models


class AddIndexConcurrently(migrations.AddIndex):
    """``AddIndex`` that builds (and drops) the index concurrently on PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        postgres = schema_editor.connection.vendor == "postgresql"
        if not schema_editor.collect_sql:  # sqlmigrate prints the statement whatever the state
            existing = _index_state(schema_editor, model, self.index.name)
            if existing == "valid":
                return
            if existing == "invalid":
                schema_editor.remove_index(model, self.index, concurrently=True)
        if postgres:
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)

    def describe(self):
        return f"{super().describe()} (concurrently on PostgreSQL)"


def _index_state(schema_editor, model, name):
    """``"valid"``, ``"invalid"`` (PostgreSQL: an interrupted concurrent build) or ``None``."""
    connection = schema_editor.connection
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT i.indisvalid FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_class t ON t.oid = i.indrelid"
                " WHERE c.relname = %s AND t.relname = %s AND pg_table_is_visible(c.oid)",
                [name, table],
            )
            row = cursor.fetchone()
            return None if row is None else ("valid" if row[0] else "invalid")
        constraints = connection.introspection.get_constraints(cursor, table)
    return "valid" if name in constraints else None


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("runs", "0003_owner"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="run",
            index=models.Index(fields=["owner", "-id"], name="runs_run_owner_idx"),
        ),
    ]
