"""Render the stored text of the messages that existed before body_html, as new messages are rendered."""

from django.db import migrations


def render_existing(apps, schema_editor):
    from chat.formatting import render_message

    Message = apps.get_model("chat", "Message")
    batch = []
    messages = Message.objects.exclude(body="").filter(body_html="").prefetch_related("mentions")
    for message in messages.iterator(chunk_size=1000):
        names = [user.username for user in message.mentions.all()]
        message.body_html = render_message(message.body, mention_names=names)
        batch.append(message)
        if len(batch) >= 1000:
            Message.objects.bulk_update(batch, ["body_html"])
            batch = []
    Message.objects.bulk_update(batch, ["body_html"])


class Migration(migrations.Migration):
    dependencies = [("chat", "0005_message_body_html")]

    operations = [migrations.RunPython(render_existing, migrations.RunPython.noop, elidable=True)]
