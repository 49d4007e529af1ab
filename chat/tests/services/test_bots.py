"""Bots (chat.services.bots, and the task in chat.services.messages): which messages go to a bot's webhook, what is
sent, and where its answer is posted, against a real HTTP server on this machine acting as the bot."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
from django_tasks_db.models import DBTaskResult

from accounts.models import Bot, User
from chat import services
from chat.models import Message, Room
from chat.services.messages import bot_message_deliver
from chat.tests.conftest import direct_message
from chat.webhooks import webhook_signature_valid
from tests.support.http import Server, answer_text, http_servers

pytestmark = pytest.mark.django_db

TASK_PATH = "chat.services.messages.bot_message_deliver"


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[dict], str]], Server]]:
    """A bot's server on 127.0.0.1: each POST is recorded, and answered with `reply(payload)` as text/plain."""
    with http_servers() as start:
        yield lambda reply: start(lambda handler: answer_text(reply(handler.received.json()))(handler))


@pytest.fixture
def loopback_allowed(settings):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    settings.CHAT_WEBHOOK_TIMEOUT_SECONDS = 2.0


@pytest.fixture
def room() -> Room:
    return services.rooms.room_get_or_create(name="lobby")


def make_bot(make_user, url: str = "http://127.0.0.1:9/hook", owner: User | None = None) -> User:
    user = make_user("pinger")
    user.is_bot = True
    user.save(update_fields=["is_bot"])
    Bot.objects.create(user=user, owner=owner, webhook_url=url)
    return user


def enqueued() -> list[list]:
    return [
        row["args"] for row in DBTaskResult.objects.filter(task_path=TASK_PATH).values_list("args_kwargs", flat=True)
    ]


def pong(payload: dict) -> str:
    return f"pong: {payload['message']['text']}"


# --- Which messages go to a bot ------------------------------------------------------------------------------------


def test_a_mention_of_a_bot_and_a_direct_message_to_it_enqueue_its_delivery(alice, bob, room, make_user):
    bot = make_bot(make_user)
    mention = services.messages.message_create(room=room, author=alice, body="@pinger and @bob, hello")
    direct = direct_message(alice, bot, "just you")
    assert enqueued() == [[mention.pk, bot.pk], [direct.pk, bot.pk]]


def test_a_message_for_no_bot_enqueues_nothing(alice, bob, room, make_user):
    make_bot(make_user)
    services.messages.message_create(room=room, author=alice, body="@bob only, not the pinger")
    direct_message(alice, bob, "hi bob")
    services.messages.message_create(room=room, author=alice, body="pinger, without the at sign")
    assert enqueued() == []


def test_a_bots_own_message_never_goes_to_a_bot(alice, room, make_user):
    bot = make_bot(make_user)
    other = make_user("echo")
    User.objects.filter(pk=other.pk).update(is_bot=True)
    services.messages.message_create(room=room, author=bot, body="@pinger @echo talking to myself")
    direct_message(bot, alice, "hello human")
    assert enqueued() == []


def test_a_plain_message_costs_no_query_for_the_bots(alice, room, make_user, django_assert_num_queries):
    make_bot(make_user)
    # INSERT, the room's last activity, who it notifies by email: the same three as without bots.
    with django_assert_num_queries(3):
        services.messages.message_create(room=room, author=alice, body="plain, names nobody")


# --- The task: what the bot receives, and its answer ---------------------------------------------------------------


def test_a_room_mention_is_posted_signed_and_the_answer_is_the_bots_message_in_the_room(
    alice, room, make_user, serve, loopback_allowed
):
    server = serve(pong)
    bot = make_bot(make_user, url=server.url)
    message = services.messages.message_create(room=room, author=alice, body="@pinger ping")

    bot_message_deliver.call(message.pk, bot.pk)

    [request] = server.received
    headers, body = request.headers, request.body
    secret = Bot.objects.get(user=bot).webhook_secret
    assert webhook_signature_valid(
        secret=secret, timestamp=headers["X-Chat-Timestamp"], body=body, signature=headers["X-Chat-Signature"]
    )
    payload = json.loads(body)
    assert payload["event"] == "message"
    assert payload["bot"] == "pinger"
    assert payload["message"]["id"] == message.pk
    assert payload["message"]["room"] == "lobby"
    assert payload["message"]["author"] == "alice"
    assert payload["message"]["thread"] is None
    answer = Message.objects.filter(author=bot).get()
    assert (answer.room_id, answer.parent_id, answer.body) == (room.pk, None, "pong: @pinger ping")


def test_a_reply_s_answer_goes_in_the_same_thread(alice, bob, room, make_user, serve, loopback_allowed):
    server = serve(pong)
    bot = make_bot(make_user, url=server.url)
    parent = services.messages.message_create(room=room, author=bob, body="a topic")
    reply = services.messages.message_create(room=room, author=alice, body="@pinger in here", parent=parent)

    bot_message_deliver.call(reply.pk, bot.pk)

    assert server.received[0].json()["message"]["thread"] == parent.pk
    answer = Message.objects.filter(author=bot).get()
    assert (answer.room_id, answer.parent_id, answer.body) == (room.pk, parent.pk, "pong: @pinger in here")


def test_a_direct_message_s_answer_goes_in_the_direct_conversation(alice, make_user, serve, loopback_allowed):
    server = serve(pong)
    bot = make_bot(make_user, url=server.url)
    message = direct_message(alice, bot, "ping privately")

    bot_message_deliver.call(message.pk, bot.pk)

    assert server.received[0].json()["message"]["room"] == "@alice"
    answer = Message.objects.filter(author=bot).get()
    assert (answer.room_id, answer.recipient_id, answer.body) == (message.room_id, alice.pk, "pong: ping privately")


def test_an_answer_starting_with_a_slash_is_posted_as_written(alice, room, make_user, serve, loopback_allowed):
    server = serve(lambda payload: "/shrug or /pm alice psst")
    bot = make_bot(make_user, url=server.url)
    message = services.messages.message_create(room=room, author=alice, body="@pinger say it")
    bot_message_deliver.call(message.pk, bot.pk)
    answer = Message.objects.filter(author=bot).get()
    assert (answer.room_id, answer.recipient_id, answer.body) == (room.pk, None, "/shrug or /pm alice psst")


def test_an_empty_answer_posts_nothing(alice, room, make_user, serve, loopback_allowed):
    server = serve(lambda payload: "  ")
    bot = make_bot(make_user, url=server.url)
    message = services.messages.message_create(room=room, author=alice, body="@pinger quiet please")
    bot_message_deliver.call(message.pk, bot.pk)
    assert len(server.received) == 1
    assert not Message.objects.filter(author=bot).exists()


def test_a_refused_url_is_logged_and_posts_nothing(alice, room, make_user, serve, settings, caplog):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    server = serve(pong)
    bot = make_bot(make_user, url=server.url)
    message = services.messages.message_create(room=room, author=alice, body="@pinger anyone?")

    with caplog.at_level(logging.WARNING, logger="chat.services.bots"):
        bot_message_deliver.call(message.pk, bot.pk)

    assert server.received == []
    assert not Message.objects.filter(author=bot).exists()
    [record] = [r for r in caplog.records if r.name == "chat.services.bots"]
    assert record.levelno == logging.WARNING
    assert "pinger" in record.getMessage()
    assert "refused" in record.getMessage()


def test_a_failing_bot_is_logged_and_not_tried_again(alice, room, make_user, loopback_allowed, caplog):
    bot = make_bot(make_user, url="http://127.0.0.1:9/hook")  # nothing listens on the discard port
    message = services.messages.message_create(room=room, author=alice, body="@pinger hello?")
    DBTaskResult.objects.all().delete()

    with caplog.at_level(logging.WARNING, logger="chat.services.bots"):
        bot_message_deliver.call(message.pk, bot.pk)

    assert any("pinger" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    assert not Message.objects.filter(author=bot).exists()
    assert enqueued() == []


def test_a_private_room_the_bot_is_not_in_is_not_sent(alice, room, make_user, serve, loopback_allowed):
    server = serve(pong)
    bot = make_bot(make_user, url=server.url)
    Room.objects.filter(pk=room.pk).update(kind=Room.Kind.PRIVATE)
    room.refresh_from_db()
    message = services.messages.message_create(room=room, author=alice, body="@pinger secret plans")

    bot_message_deliver.call(message.pk, bot.pk)

    assert server.received == []
    assert not Message.objects.filter(author=bot).exists()


def test_a_user_no_longer_a_bot_is_not_sent(alice, room, make_user, serve, loopback_allowed):
    server = serve(pong)
    bot = make_bot(make_user, url=server.url)
    message = services.messages.message_create(room=room, author=alice, body="@pinger still there?")
    User.objects.filter(pk=bot.pk).update(is_bot=False)

    bot_message_deliver.call(message.pk, bot.pk)

    assert server.received == []
