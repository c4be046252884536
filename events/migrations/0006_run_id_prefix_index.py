"""The run list's run id prefix search, served by an index on PostgreSQL (issue 15).

`run_id LIKE 'abc%'` can use a btree only with the C collation or a
pattern operator class; the databases here use others (C.UTF-8, en_US), so
without this index the search walked every run of the project.  SQLite
needs nothing: its search is a range over the (project, run_id) unique
index (events.selectors._id_prefix).  Index changes only.
"""

from django.db import migrations

INDEX = "run_project_run_id_pattern"


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON events_run (project_id, run_id varchar_pattern_ops)"
        )


def drop(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("events", "0005_event_partitioned")]

    operations = [migrations.RunPython(create, drop)]
