"""Runs and threads get an owner: ``client:<name>`` (an API token's client) or ``user:<pk>``.

Rows that exist before this migration keep a blank owner: no API token sees them (the admin,
which is global for staff with permissions, still does). Give them to a client with one
UPDATE when you want it to see them (docs/api.md, "Owners").

Columns only: adding a column with a constant default is a quick catalogue change, but an index
built in the same transaction would hold the table's ACCESS EXCLUSIVE lock for the whole build.
The owner index is built by 0004, concurrently on PostgreSQL.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("runs", "0002_tool_call_submit_claims"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="owner",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Its thread's owner: client:<name> or user:<pk>; blank: nobody's.",
                max_length=128,
            ),
        ),
        migrations.AddField(
            model_name="thread",
            name="owner",
            field=models.CharField(
                blank=True,
                default="",
                help_text="client:<name> (an API token's client) or user:<pk>; blank: nobody's.",
                max_length=128,
            ),
        ),
    ]
