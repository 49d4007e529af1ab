"""Logs an operator can read: one line per socket event with its fields, JSON on demand, never message text at INFO."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chat.models import Room
from chat.tests.conftest import ORIGIN, joined, open_socket, receive_until, send_message, session_cookie
from config.asgi import application
from config.logging import JsonFormatter, KeyValueFormatter
from tests.support.servers import BASE_DIR, django_process

SECRET = "Tangerine-Zeppelin-42"


def record(message: str = "socket refused", level: int = logging.INFO, exc_info=None, **extra) -> logging.LogRecord:
    logger = logging.getLogger("chat.consumers")
    return logger.makeRecord(logger.name, level, __file__, 1, message, (), exc_info, extra=extra)


def socket_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "chat.consumers" and r.levelno >= logging.INFO]


# --- the formatters


def test_json_lines_carry_time_level_logger_message_and_the_extra_fields():
    line = JsonFormatter().format(record(user="alice", room="lobby", reason="anonymous", close_code=4001))

    entry = json.loads(line)
    assert list(entry)[:4] == ["time", "level", "logger", "message"]
    assert entry["time"].endswith("+00:00")
    assert entry["level"] == "INFO"
    assert entry["logger"] == "chat.consumers"
    assert entry["message"] == "socket refused"
    assert entry["user"] == "alice"
    assert entry["room"] == "lobby"
    assert entry["reason"] == "anonymous"
    assert entry["close_code"] == 4001
    assert "\n" not in line


def test_json_lines_keep_a_traceback_and_anything_not_json_as_text():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        line = JsonFormatter().format(record("failed", logging.ERROR, exc_info=sys.exc_info(), where=BASE_DIR))

    entry = json.loads(line)
    assert "RuntimeError: boom" in entry["exc_info"]
    assert entry["where"] == str(BASE_DIR)
    assert "\n" not in line


def test_plain_lines_append_the_fields_as_key_value():
    formatter = KeyValueFormatter("%(levelname)s %(name)s %(message)s")

    line = formatter.format(record(user=None, room="my room", reason="invalid_room", close_code=4004))

    assert line == 'INFO chat.consumers socket refused user=- room="my room" reason=invalid_room close_code=4004'
    assert formatter.format(record("plain")) == "INFO chat.consumers plain"


@pytest.mark.parametrize(
    ("env", "expect_json", "expect_info"),
    [({}, False, True), ({"LOG_FORMAT": "json"}, True, True), ({"LOG_LEVEL": "WARNING"}, False, False)],
)
def test_the_environment_picks_the_format_and_the_level(env, expect_json, expect_info):
    script = (
        "import logging; log = logging.getLogger('chat.consumers');"
        "log.info('socket connected', extra={'user': 'alice', 'room': 'lobby'});"
        "log.warning('frame rejected', extra={'user': 'alice', 'reason': 'malformed'})"
    )
    result = django_process(script, env)

    lines = [line for line in result.stderr.splitlines() if "chat.consumers" in line]
    assert len(lines) == (2 if expect_info else 1), result.stderr
    if expect_json:
        entries = [json.loads(line) for line in lines]
        assert entries[0] | {"time": None} == {
            "time": None,
            "level": "INFO",
            "logger": "chat.consumers",
            "message": "socket connected",
            "user": "alice",
            "room": "lobby",
        }
    else:
        assert lines[-1].endswith("WARNING chat.consumers frame rejected user=alice reason=malformed")


def test_an_unknown_log_format_stops_the_start_with_a_clear_error():
    result = django_process("", {"LOG_FORMAT": "xml"}, check=False)

    assert result.returncode != 0
    assert "LOG_FORMAT is 'xml': use plain (the default) or json." in result.stderr


# --- what the sockets log

socket_test = pytest.mark.django_db(transaction=True)


@socket_test
async def test_a_socket_logs_its_connect_and_its_disconnect_with_user_room_and_close_code(alice, caplog):
    caplog.set_level(logging.INFO, logger="chat")
    socket = await joined(alice, "lobby")
    await socket.disconnect(code=1001)

    connected, disconnected = socket_lines(caplog)
    assert connected.getMessage() == "socket connected"
    assert (connected.user, connected.room, connected.path) == ("alice", "lobby", "/ws/chat/lobby/")
    assert disconnected.getMessage() == "socket disconnected"
    assert (disconnected.user, disconnected.room, disconnected.close_code) == ("alice", "lobby", 1001)


@socket_test
async def test_refused_sockets_log_the_reason_and_the_close_code(alice, caplog):
    caplog.set_level(logging.INFO, logger="chat")

    anonymous = await open_socket(None, "lobby")
    assert (await anonymous.receive_output(timeout=5))["code"] == 4001
    invalid = await open_socket(alice, "no%20spaces")
    await receive_until(invalid, lambda f: 'id="chat-error"' in f)

    first, second = socket_lines(caplog)
    assert first.getMessage() == second.getMessage() == "socket refused"
    assert (first.user, first.room, first.reason, first.close_code) == (None, "lobby", "anonymous", 4001)
    assert (second.user, second.room, second.reason, second.close_code) == ("alice", "no spaces", "invalid_room", 4004)


@socket_test
async def test_the_directory_socket_logs_its_connect_disconnect_and_refusal(alice, caplog):
    caplog.set_level(logging.INFO, logger="chat")
    cookie = (await sync_to_async(session_cookie)(alice)).encode()
    socket = WebsocketCommunicator(
        application, "/ws/directory/", headers=[(b"origin", ORIGIN.encode()), (b"cookie", cookie)]
    )
    assert (await socket.connect(timeout=5))[0]
    await socket.receive_from(timeout=5)
    await socket.disconnect(code=1001)
    anonymous = WebsocketCommunicator(application, "/ws/directory/", headers=[(b"origin", ORIGIN.encode())])
    await anonymous.connect(timeout=5)
    await anonymous.receive_output(timeout=5)

    connected, disconnected, refused = socket_lines(caplog)
    assert (connected.getMessage(), connected.user, connected.path) == ("socket connected", "alice", "/ws/directory/")
    assert (disconnected.getMessage(), disconnected.close_code) == ("socket disconnected", 1001)
    assert (refused.getMessage(), refused.user, refused.reason, refused.close_code) == (
        "socket refused",
        None,
        "anonymous",
        4001,
    )


@socket_test
async def test_rejected_frames_and_refused_messages_log_a_reason_code(alice, caplog):
    caplog.set_level(logging.INFO, logger="chat")
    socket = await joined(alice, "lobby")

    await socket.send_to(text_data="not json")
    await receive_until(socket, lambda f: 'id="chat-error"' in f)
    await send_message(socket, "/pm nobody hello")
    await receive_until(socket, lambda f: 'id="chat-error"' in f)
    await send_message(socket, "x" * 2001)
    await receive_until(socket, lambda f: 'id="chat-error"' in f)
    await sync_to_async(Room.objects.filter(name="lobby").update)(read_only=True)
    await socket.disconnect()
    socket = await joined(alice, "lobby")
    await send_message(socket, "anyone?")
    await receive_until(socket, lambda f: 'id="chat-error"' in f)
    await socket.disconnect()

    refusals = [(r.levelname, r.getMessage(), r.reason) for r in socket_lines(caplog) if hasattr(r, "reason")]
    assert refusals == [
        ("WARNING", "frame rejected", "malformed"),
        ("INFO", "message refused", "pm_unknown_user"),
        ("WARNING", "message refused", "too_long"),  # no browser sends it: the form caps the length
        ("INFO", "message refused", "room_read_only"),
    ]
    assert all(r.user == "alice" and r.room == "lobby" for r in socket_lines(caplog))


@socket_test
async def test_no_message_text_is_ever_logged_at_info_or_above(alice, bob, caplog):
    caplog.set_level(logging.DEBUG)
    alice_socket, bob_socket = await joined(alice), await joined(bob)

    await send_message(alice_socket, f"hello {SECRET}")
    await receive_until(bob_socket, lambda f: SECRET in f)
    await send_message(alice_socket, f"/pm bob {SECRET}")
    await receive_until(bob_socket, lambda f: SECRET in f)
    await send_message(alice_socket, f"/pm {SECRET} hi")  # the unknown "user" is what alice typed
    await receive_until(alice_socket, lambda f: 'id="chat-error"' in f)
    await send_message(alice_socket, SECRET * 100)
    await receive_until(alice_socket, lambda f: 'id="chat-error"' in f)
    await alice_socket.send_to(text_data=json.dumps({"nonsense": SECRET}))
    await receive_until(alice_socket, lambda f: 'id="chat-error"' in f)
    await alice_socket.disconnect()
    await bob_socket.disconnect()

    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) >= 7  # connects, refusals, disconnects
    for line in lines:
        for formatted in (JsonFormatter().format(line), KeyValueFormatter("%(message)s").format(line)):
            assert SECRET.lower() not in formatted.lower(), formatted
