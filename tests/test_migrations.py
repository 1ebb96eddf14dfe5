"""Models and migrations agree, and the owner migration leaves older rows to nobody."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_OWNERS = [("runs", "0002_tool_call_submit_claims")]


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_rows_from_before_owners_get_a_blank_owner():
    """No API client sees them after the upgrade (docs/api.md, "Owners"); the admin does."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("runs")
    executor.migrate(BEFORE_OWNERS)
    try:
        old = executor.loader.project_state(BEFORE_OWNERS).apps
        thread = old.get_model("runs", "Thread").objects.create()
        old.get_model("runs", "Run").objects.create(thread=thread, model="m")

        executor = MigrationExecutor(connection)
        executor.migrate(latest)
        new = executor.loader.project_state(latest).apps
        assert list(new.get_model("runs", "Run").objects.values_list("owner", flat=True)) == [""]
        assert list(new.get_model("runs", "Thread").objects.values_list("owner", flat=True)) == [""]
    finally:
        MigrationExecutor(connection).migrate(latest)
