"""Frames no browser sends, and floods: each gets a clear error, a warning in the log, and changes nothing stored.

Through the real ASGI application (origin check, session auth, routing, consumer), on the in-memory and the Redis
layer. Frames over the server's size limits are daphne's to drop: tests/system/test_faults.py sends those.
"""

from __future__ import annotations

import logging
import re

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message
from chat.tests.conftest import hears_only_presence, joined, receive_until, send_message
from tests.support.html import parse, visible_text
from tests.support.servers import BASE_DIR

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def chat_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="chat")
    return caplog


def has_message(text: str):
    return lambda frame: "message-body" in frame and text in visible_text(frame)


def has_error(text: str):
    return lambda frame: 'id="chat-error"' in frame and text in visible_text(frame)


def input_value(html: str) -> str | None:
    return next((attrs.get("value") for _, attrs in parse(html).tags if attrs.get("name") == "message"), None)


def warnings_about(caplog: pytest.LogCaptureFixture, reason: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and getattr(r, "reason", None) == reason]


def assert_no_errors_or_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


# Each is what a script, not the message form, might send; the ids name them in failures.
HOSTILE_FRAMES = {
    "not JSON": "not json",
    "broken JSON": '{"message": "unfinished',
    "an array": "[1, 2]",
    "null": "null",
    "a bare string": '"just a string"',
    "a number as message": '{"message": 5}',
    "null as message": '{"message": null}',
    "a list as message": '{"message": ["a", "list"]}',
    "an object as message": '{"message": {"nested": "object"}}',
    "no message": '{"HEADERS": {"HX-Request": "true"}}',
    "a lone surrogate": '{"message": "lone \\ud800 surrogate"}',
    "binary": b"\x00\x01\xff",
    "JSON in a binary frame": b'{"message": "json in a binary frame"}',
}


async def test_a_frame_that_is_not_the_message_form_gets_an_error_and_a_warning_and_the_socket_works_on(
    alice, bob, chat_log
):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    for what, frame in HOSTILE_FRAMES.items():
        chat_log.clear()

        if isinstance(frame, bytes):
            await alice_socket.send_to(bytes_data=frame)
        else:
            await alice_socket.send_to(text_data=frame)

        error = await receive_until(alice_socket, lambda f: 'id="chat-error"' in f)
        assert "That message could not be read. Please type it again." in visible_text(error), what
        assert [r.getMessage() for r in warnings_about(chat_log, "malformed")] == ["frame rejected"], what
        assert_no_errors_or_tracebacks(chat_log)
        assert await sync_to_async(Message.objects.count)() == 0, what
        assert await hears_only_presence(bob_socket, quiet=0.1), what
    await send_message(alice_socket, "the same socket still works")
    await receive_until(bob_socket, has_message("the same socket still works"))
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_text_over_the_limit_gets_the_length_error_and_a_warning_and_is_neither_stored_nor_sent(
    alice, bob, chat_log
):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    chat_log.clear()

    await send_message(alice_socket, "<b>" + "x" * 2000)

    error = await receive_until(alice_socket, lambda f: 'id="chat-error"' in f)
    assert "Messages can be at most 2,000 characters; yours has 2,003." in visible_text(error)
    assert input_value(error) == "<b>" + "x" * 2000
    assert [r.getMessage() for r in warnings_about(chat_log, "too_long")] == ["message refused"]
    assert_no_errors_or_tracebacks(chat_log)
    assert await hears_only_presence(bob_socket, quiet=0.2)
    assert await sync_to_async(Message.objects.count)() == 0
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_a_flood_from_two_tabs_is_refused_visibly_not_stored_not_sent_and_others_are_not_slowed(
    alice, bob, chat_log
):
    tab_1, tab_2 = await joined(alice), await joined(alice, "elsewhere")
    bob_socket = await joined(bob)
    for i in range(10):
        tab = tab_1 if i % 2 else tab_2
        await send_message(tab, f"burst {i}")
        await receive_until(tab, lambda f: 'id="message-form"' in f and 'value=""' in f)
    chat_log.clear()

    await send_message(tab_1, "one too many")

    refusal = await receive_until(tab_1, has_error("Slow down: at most 10 messages in 10 seconds."))
    assert input_value(refusal) == "one too many"
    assert [r.getMessage() for r in warnings_about(chat_log, "rate_limited")] == ["message refused"]
    assert_no_errors_or_tracebacks(chat_log)
    # Bob saw the five bursts sent to the lobby, not the refused one; his own message goes through at once.
    await send_message(bob_socket, "bob is not slowed down")
    frames = []
    while not has_message("bob is not slowed down")(frames[-1] if frames else ""):
        frames.append(await bob_socket.receive_from(timeout=5))
    assert not any(has_message("one too many")(f) for f in frames)
    await receive_until(tab_1, has_message("bob is not slowed down"))
    assert await sync_to_async(Message.objects.filter(author=alice).count)() == 10
    assert not await sync_to_async(Message.objects.filter(body="one too many").exists)()
    for socket in (tab_1, tab_2, bob_socket):
        await socket.disconnect()


@pytest.mark.parametrize("path", ["Makefile", "Procfile", "README.md", "tests/support/servers.py"])
def test_every_start_command_sets_the_frame_limits_deliberately(path):
    """daphne's defaults are 1 MiB for both; SECURITY.md explains the two numbers."""
    text = (BASE_DIR / path).read_text()
    flags = re.findall(r"--websocket-max-(frame|message)-size[\"',\s\\]+(?:str\()?(\w+)", text)
    assert sorted(set(flags)) in (
        [("frame", "65536"), ("message", "2097152")],
        [("frame", "WEBSOCKET_MAX_FRAME_SIZE"), ("message", "WEBSOCKET_MAX_MESSAGE_SIZE")],
    ), path
