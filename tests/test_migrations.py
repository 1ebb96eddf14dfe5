"""Models and migrations agree, the owner migration leaves older rows to nobody, and the owner
index is built without locking the runs table on PostgreSQL."""

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.test.utils import CaptureQueriesContext

BEFORE_OWNERS = [("runs", "0002_tool_call_submit_claims")]
OWNER_COLUMNS = [("runs", "0003_owner")]
OWNER_INDEX_BUILT = [("runs", "0004_owner_index")]
OWNER_INDEX = "runs_run_owner_idx"


def _owner_index_exists() -> bool:
    with connection.cursor() as cursor:
        return OWNER_INDEX in connection.introspection.get_constraints(cursor, "runs_run")


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


def test_the_owner_index_is_built_outside_a_transaction():
    """CREATE INDEX CONCURRENTLY cannot run in a transaction: 0004 must not be atomic, and 0003
    (the columns) builds no index while it holds the table's lock."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    columns = loader.get_migration("runs", "0003_owner")
    index = loader.get_migration("runs", "0004_owner_index")
    assert index.atomic is False
    assert not [op for op in columns.operations if "Index" in type(op).__name__]
    assert [op.index.name for op in index.operations] == [OWNER_INDEX]


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.usefixtures("on_postgres")
def test_sqlmigrate_shows_a_concurrent_build_on_postgres():
    out = io.StringIO()
    call_command("sqlmigrate", "runs", "0004", stdout=out)
    assert f'CREATE INDEX CONCURRENTLY "{OWNER_INDEX}"' in out.getvalue()
    assert "BEGIN" not in out.getvalue()  # not wrapped in a transaction


@pytest.mark.django_db(transaction=True)
def test_the_owner_index_migrates_forwards_and_backwards():
    """Concurrently on PostgreSQL (both ways), plainly elsewhere; the index is there after it."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("runs")
    try:
        executor.migrate(OWNER_COLUMNS)
        assert not _owner_index_exists()
        with CaptureQueriesContext(connection) as queries:
            MigrationExecutor(connection).migrate(latest)
        assert _owner_index_exists()
        built = [q["sql"] for q in queries if OWNER_INDEX in q["sql"] and "CREATE" in q["sql"]]
        assert len(built) == 1
        assert ("CONCURRENTLY" in built[0]) == (connection.vendor == "postgresql")
    finally:
        MigrationExecutor(connection).migrate(latest)


@pytest.mark.django_db(transaction=True)
def test_a_database_that_already_has_the_owner_index_keeps_it():
    """An earlier revision of 0003 built the index: 0004 finds it and builds nothing."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("runs")
    try:
        executor.migrate(OWNER_COLUMNS)
        run = executor.loader.project_state(latest).apps.get_model("runs", "Run")
        (index,) = [i for i in run._meta.indexes if i.name == OWNER_INDEX]
        with connection.schema_editor() as editor:
            editor.add_index(run, index)
        with CaptureQueriesContext(connection) as queries:
            MigrationExecutor(connection).migrate(OWNER_INDEX_BUILT)
        assert not [q for q in queries if "CREATE INDEX" in q["sql"]]
        assert _owner_index_exists()
    finally:
        MigrationExecutor(connection).migrate(latest)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
def test_an_interrupted_concurrent_build_is_repaired_by_migrating_again(run_row):
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind: 0004 rebuilds it."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("runs")
    run_row("queued"), run_row("queued")  # two blank owners: a unique build fails on them
    try:
        executor.migrate(OWNER_COLUMNS)
        with (
            pytest.raises(Exception, match="could not create unique index"),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {OWNER_INDEX} ON runs_run (owner)")
        MigrationExecutor(connection).migrate(latest)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = %s::regclass",
                [OWNER_INDEX],
            )
            assert cursor.fetchone() == (True, False)
    finally:
        MigrationExecutor(connection).migrate(latest)


def test_the_batch_index_is_built_outside_a_transaction():
    """0005 adds the cheap-runs columns and builds no index on the runs table; 0006 and 0007
    build theirs concurrently on PostgreSQL (like 0004)."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    columns = loader.get_migration("runs", "0005_run_options_batches_cost")
    index = loader.get_migration("runs", "0006_run_batch_index")
    on_runs = [
        op
        for op in columns.operations
        if "Index" in type(op).__name__ and getattr(op, "model_name", "") == "run"
    ]
    assert not on_runs
    assert index.atomic is False
    assert [op.index.name for op in index.operations] == ["runs_run_batch_idx"]
    later = loader.get_migration("runs", "0007_round_usage_spend_index")
    assert later.atomic is False
    built = [op.index.name for op in later.operations if hasattr(op, "index")]
    assert built == ["runs_run_owner_created_idx"]


def test_the_startable_index_is_partial_and_built_outside_a_transaction():
    """0008's index covers only the runs waiting to start, so a chunked start's claim reads as
    many index entries as it takes; built concurrently on PostgreSQL like the others."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    migration = loader.get_migration("runs", "0008_startable_index")
    assert migration.atomic is False
    (op,) = migration.operations
    assert type(op).__name__ == "AddIndexConcurrently"
    assert op.index.name == "runs_run_startable_idx" and op.index.condition is not None


@pytest.mark.django_db(transaction=True)
def test_the_status_index_becomes_status_then_id_both_ways_without_a_moment_without_one():
    """0009 builds (status, id) before it drops (status); backwards the reverse. Concurrently
    on PostgreSQL, plainly elsewhere."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("runs")

    def indexes() -> set[str]:
        with connection.cursor() as cursor:
            found = connection.introspection.get_constraints(cursor, "runs_run")
        return {"runs_run_status_idx", "runs_run_status_id_idx"} & set(found)

    try:
        executor.migrate([("runs", "0008_startable_index")])
        assert indexes() == {"runs_run_status_idx"}
        with CaptureQueriesContext(connection) as queries:
            MigrationExecutor(connection).migrate(latest)
        assert indexes() == {"runs_run_status_id_idx"}
        ddl = [q["sql"] for q in queries if "INDEX" in q["sql"] and "runs_run_status" in q["sql"]]
        with CaptureQueriesContext(connection) as queries:
            MigrationExecutor(connection).migrate([("runs", "0008_startable_index")])
        assert indexes() == {"runs_run_status_idx"}
        ddl += [q["sql"] for q in queries if "INDEX" in q["sql"] and "runs_run_status" in q["sql"]]
        new = [("CREATE" in s, '"runs_run_status_id_idx"' in s) for s in ddl]
        # Forwards: the new one built, then the old one dropped; backwards: the old one built
        # again, then the new one dropped.
        assert new == [(True, True), (False, False), (True, False), (False, True)]
        postgres = connection.vendor == "postgresql"
        assert all(("CONCURRENTLY" in s) == postgres for s in ddl)
    finally:
        MigrationExecutor(connection).migrate(latest)
