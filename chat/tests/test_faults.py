"""The database refuses a write: the sender is told, nothing is stored or sent, the socket works on.

The refusal is real: a trigger that raises on INSERT into chat_message, installed in the database for the test
(SQLite or PostgreSQL, whichever the suite runs on). Outages of Redis and of whole server processes are in
tests/system/test_faults.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from chat.models import Message
from chat.tests.conftest import hears_only_presence, joined, receive_until, send_message
from tests.support.html import parse, visible_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

TRIGGER_SQL = {
    "sqlite": [
        "CREATE TRIGGER chat_message_refused BEFORE INSERT ON chat_message "
        "BEGIN SELECT RAISE(ABORT, 'chat_message is read-only'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION chat_message_refused() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'chat_message is read-only'; END $$",
        "CREATE TRIGGER chat_message_refused BEFORE INSERT ON chat_message "
        "FOR EACH ROW EXECUTE FUNCTION chat_message_refused()",
    ],
}
DROP_SQL = {
    "sqlite": ["DROP TRIGGER IF EXISTS chat_message_refused"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS chat_message_refused ON chat_message",
        "DROP FUNCTION IF EXISTS chat_message_refused()",
    ],
}


def execute(statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


@pytest.fixture
def refusing_database() -> Iterator[None]:
    """While the test runs, every INSERT into chat_message fails inside the database."""
    execute(TRIGGER_SQL[connection.vendor])
    yield
    execute(DROP_SQL[connection.vendor])


def has_message(text: str):
    return lambda frame: "message-body" in frame and text in visible_text(frame)


async def test_when_the_database_refuses_the_message_the_sender_sees_an_error_and_nobody_sees_the_message(
    alice, bob, refusing_database, caplog
):
    caplog.set_level(logging.INFO, logger="chat")
    alice_socket, bob_socket = await joined(alice), await joined(bob)

    await send_message(alice_socket, "refused by the database")

    error = await receive_until(alice_socket, lambda f: 'id="chat-error"' in f)
    assert "could not be saved just now; it is still in the box" in visible_text(error)
    value = next(attrs.get("value") for _, attrs in parse(error).tags if attrs.get("name") == "message")
    assert value == "refused by the database"
    assert await hears_only_presence(bob_socket, quiet=0.3)
    assert await sync_to_async(Message.objects.count)() == 0
    # A fault of the server, not of the user: an error with its traceback, for whoever runs it.
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.exc_info] == [
        "message not stored"
    ]

    await sync_to_async(execute)(DROP_SQL[connection.vendor])
    await send_message(alice_socket, "stored once the database takes writes")
    await receive_until(bob_socket, has_message("stored once the database takes writes"))
    await alice_socket.disconnect()
    await bob_socket.disconnect()
