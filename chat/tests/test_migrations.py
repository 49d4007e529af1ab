"""Data migrations: rows stored before a migration look as if they had been stored after it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("chat", "0005_message_body_html")]


@pytest.mark.django_db(transaction=True)
def test_messages_stored_before_formatting_get_their_rendering_with_their_mentions():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    User, Room, Message = (
        apps.get_model(*name) for name in (("accounts", "User"), ("chat", "Room"), ("chat", "Message"))
    )
    alice, bob = User.objects.create(username="alice"), User.objects.create(username="bob")
    room = Room.objects.create(name="lobby")
    old = Message.objects.create(room=room, author=alice, body="**hi** @bob <b>x</b>")
    old.mentions.set([bob])
    retracted = Message.objects.create(room=room, author=alice, body="")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    from chat.models import Message as CurrentMessage

    assert CurrentMessage.objects.get(pk=old.pk).body_html == (
        '<p><strong>hi</strong> <span class="mention">@bob</span> &lt;b&gt;x&lt;/b&gt;</p>'
    )
    assert CurrentMessage.objects.get(pk=retracted.pk).body_html == ""
