"""A GIN index for room search on PostgreSQL; other databases search without one."""

from django.db import migrations

INDEX = "chat_message_body_search"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # The expression of chat.selectors.message_search, so that the planner uses it.
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON chat_message USING gin (to_tsvector('english'::regconfig, COALESCE(body, ''::text)))"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_message_edits_mentions_room_visits")]

    operations = [migrations.RunPython(create_index, drop_index)]
