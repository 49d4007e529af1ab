"""The room socket through the real ASGI application, on the in-memory and the Redis layer."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chat import services
from chat.consumers import base as consumers_base
from chat.events import TypingNoticed
from chat.models import Message
from chat.tests.conftest import (
    ORIGIN,
    arrived,
    departed,
    drain,
    hears_only_presence,
    is_presence,
    joined,
    online_ids,
    open_socket,
    receive_until,
    send_message,
    session_cookie,
)
from config.asgi import application
from tests.support.html import attribute_names, element_ids, element_tags, visible_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]


def has_message(text: str):
    return lambda frame: "message-body" in frame and text in visible_text(frame)


async def test_when_message_posted_then_seen_by_everyone_in_same_room(alice, bob, carol):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    carol_socket = await joined(carol, "elsewhere")

    await send_message(alice_socket, "hello everyone")

    for socket in (alice_socket, bob_socket):
        frame = await receive_until(socket, has_message("hello everyone"))
        assert "alice" in visible_text(frame)
        assert 'hx-swap-oob="beforeend:#messages"' in frame
    message = await sync_to_async(Message.objects.get)()
    assert message.body == "hello everyone"
    assert f'id="message-{message.pk}"' in frame
    assert await hears_only_presence(carol_socket, quiet=0.3)
    for socket in (alice_socket, bob_socket, carol_socket):
        await socket.disconnect()


async def test_sender_gets_a_fresh_empty_form_and_a_cleared_error(alice):
    socket = await joined(alice)
    await send_message(socket, "/pm nobody hi")
    error = await receive_until(socket, lambda f: 'id="chat-error"' in f)
    assert "There is no user called nobody" in visible_text(error)

    await send_message(socket, "now a real message")
    frame = await receive_until(socket, lambda f: 'id="message-form"' in f)
    assert element_ids(frame)[:2] == ["chat-error", "message-form"]
    assert 'value=""' in frame
    assert visible_text(frame.split("<form")[0]) == ""
    await socket.disconnect()


async def test_message_text_is_escaped_never_html(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    payload = '<img src=x onerror=alert(1)><b>bold</b><div hx-get="/x" hx-trigger="load">'
    await send_message(alice_socket, payload)

    frame = await receive_until(bob_socket, has_message("<img src=x"))
    body = frame.split('class="message-body">')[1].split("</div>")[0]
    assert visible_text(body) == payload
    assert "img" not in element_tags(frame)
    assert "b" not in element_tags(frame)
    assert "hx-trigger" not in attribute_names(frame)
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_on_connect_the_log_is_replaced_with_the_recent_history(alice, make_user):
    author = await sync_to_async(make_user)()
    room_messages = [f"old message {i}" for i in range(55)]
    socket = await open_socket(author, "history")
    await receive_until(socket, lambda f: 'id="messages"' in f)
    for text in room_messages:
        await sync_to_async(Message.objects.create)(room_id=await _room_id("history"), author=author, body=text)
    await socket.disconnect()

    socket = await open_socket(alice, "history")
    log = await receive_until(socket, lambda f: 'id="messages"' in f)
    assert 'hx-swap-oob="true"' in log
    text = visible_text(log)
    assert "old message 54" in text
    assert "old message 5 " in text
    assert "old message 4 " not in text
    assert len([i for i in element_ids(log) if i.startswith("message-")]) == 50
    await socket.disconnect()


async def _room_id(name: str) -> int:
    from chat.models import Room

    return (await sync_to_async(Room.objects.get)(name__iexact=name)).pk


async def test_a_reconnecting_tab_gets_what_it_missed(alice, bob):
    bob_socket = await joined(bob)
    await bob_socket.disconnect()
    alice_socket = await joined(alice)
    await send_message(alice_socket, "sent while bob was away")
    await receive_until(alice_socket, has_message("sent while bob was away"))

    bob_socket = await open_socket(bob)
    log = await receive_until(bob_socket, lambda f: 'id="messages"' in f)
    assert "sent while bob was away" in visible_text(log)
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_presence_counts_tabs_so_closing_one_of_two_keeps_the_user_online(alice, bob):
    bob_socket = await joined(bob)
    alice_tab_1 = await joined(alice)
    alice_tab_2 = await joined(alice)
    await receive_until(bob_socket, arrived(alice))
    await alice_tab_1.disconnect()

    assert not any(departed(alice)(frame) for frame in await drain(bob_socket))
    await alice_tab_2.disconnect()
    await receive_until(bob_socket, departed(alice))
    await bob_socket.disconnect()


async def test_the_online_list_updates_live_as_people_join_and_leave(alice, bob):
    bob_socket = await joined(bob)
    alice_socket = await joined(alice)
    online = await receive_until(bob_socket, arrived(alice))
    assert visible_text(online) == "alice"
    # A stale entry is dropped first, then the fresh one appended: a repeated announcement never lists anyone twice.
    assert online.index(f'<span id="online-user-{alice.pk}" hx-swap-oob="delete">') < online.index("beforeend:")
    assert element_tags(online).count("li") == 1

    await alice_socket.disconnect()
    await receive_until(bob_socket, departed(alice))
    assert alice.pk not in await online_ids()
    await bob_socket.disconnect()


async def test_a_joining_tab_gets_the_whole_online_list_with_its_log(alice, bob, carol):
    others = [await joined(bob), await joined(carol)]
    socket = await open_socket(alice)
    frame = await receive_until(socket, lambda f: 'id="online-users"' in f)
    assert 'id="messages"' in frame
    online = frame.split('id="online-users"')[1].split("</ul>")[0]
    assert visible_text(online.split(">", 1)[1]) == "alice bob carol"
    for other in [*others, socket]:
        await other.disconnect()


async def test_private_message_reaches_every_tab_of_target_and_sender_and_nobody_else(alice, bob, carol):
    alice_socket = await joined(alice)
    bob_tab_here, bob_tab_elsewhere = await joined(bob), await joined(bob, "elsewhere")
    carol_socket = await joined(carol)
    await receive_until(alice_socket, lambda f: ">carol<" in f)

    await send_message(alice_socket, "/pm BOB meet me at noon")

    for socket in (bob_tab_here, bob_tab_elsewhere, alice_socket):
        frame = await receive_until(socket, has_message("meet me at noon"))
        assert "message--private" in frame
        assert "private to bob" in visible_text(frame)
    assert "/pm" not in visible_text(frame)
    assert not any("noon" in frame for frame in await drain(carol_socket))
    for socket in (alice_socket, bob_tab_here, bob_tab_elsewhere, carol_socket):
        await socket.disconnect()


async def test_private_message_to_an_offline_user_is_shown_when_they_next_open_a_room(alice, bob):
    alice_socket = await joined(alice)
    await send_message(alice_socket, "/pm bob read this later")
    await receive_until(alice_socket, has_message("read this later"))

    bob_socket = await open_socket(bob, "another-room")
    log = await receive_until(bob_socket, lambda f: 'id="messages"' in f)
    assert "read this later" in visible_text(log)
    assert "message--private" in log
    await alice_socket.disconnect()
    await bob_socket.disconnect()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("/pm ghost hello", "There is no user called ghost."),
        ("/pm alice hello me", "You cannot send a private message to yourself."),
        ("/pm bob", "Write something after the name"),
        ("/pm", "Say who the private message is for"),
        ("/pn bob secret", "There is no command /pn"),
        ("x" * 2001, "Messages can be at most 2,000 characters; yours has 2,001."),
    ],
)
async def test_refused_messages_get_an_error_keep_their_text_and_store_nothing(alice, bob, text, error):
    socket = await joined(alice)
    await send_message(socket, text)
    frame = await receive_until(socket, lambda f: 'id="chat-error"' in f)
    assert error in visible_text(frame)
    assert f'value="{text}"' in frame
    assert await sync_to_async(Message.objects.count)() == 0
    await send_message(socket, "the socket still works")
    await receive_until(socket, has_message("the socket still works"))
    await socket.disconnect()


async def test_a_mistyped_private_message_reaches_nobody_in_the_room(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    await receive_until(alice_socket, lambda f: ">bob<" in f)

    await send_message(alice_socket, "/Pn bob the secret plan")
    frame = await receive_until(alice_socket, lambda f: 'id="chat-error"' in f)
    assert "There is no command /Pn" in visible_text(frame)
    assert 'value="/Pn bob the secret plan"' in frame
    assert not any("secret plan" in frame for frame in await drain(bob_socket))

    await send_message(alice_socket, "//Pn is how not to type it")
    frame = await receive_until(bob_socket, has_message("/Pn is how not to type it"))
    assert "//Pn" not in visible_text(frame)
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_a_blank_message_is_ignored(alice):
    socket = await joined(alice)
    await send_message(socket, "   ")
    frame = await receive_until(socket, lambda f: 'id="message-form"' in f)
    assert "message-body" not in frame
    assert await sync_to_async(Message.objects.count)() == 0
    await socket.disconnect()


@pytest.mark.parametrize("frame", ["not json", "[1, 2]", '{"message": 5}', '{"HEADERS": {}}', "null"])
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(alice, frame):
    socket = await joined(alice)
    await socket.send_to(text_data=frame)
    error = await receive_until(socket, lambda f: 'id="chat-error"' in f)
    assert "could not be read" in visible_text(error)
    await send_message(socket, "still here")
    await receive_until(socket, has_message("still here"))
    await socket.disconnect()


async def test_binary_frames_get_an_error_and_the_socket_stays_open(alice):
    socket = await joined(alice)
    await socket.send_to(bytes_data=b"\x00\x01")
    error = await receive_until(socket, lambda f: 'id="chat-error"' in f)
    assert "could not be read" in visible_text(error)
    await socket.disconnect()


async def test_a_flood_is_refused_across_tabs_after_ten_messages_in_ten_seconds(alice, bob):
    tab_1, tab_2 = await joined(alice), await joined(alice, "elsewhere")
    for i in range(10):
        await send_message(tab_1 if i % 2 else tab_2, f"burst {i}")
        await receive_until(tab_1 if i % 2 else tab_2, lambda f: 'id="message-form"' in f and 'value=""' in f)

    await send_message(tab_1, "one too many")
    frame = await receive_until(tab_1, lambda f: 'id="chat-error"' in f and "Slow down" in f)
    assert 'value="one too many"' in frame
    assert await sync_to_async(Message.objects.filter(author=alice).count)() == 10
    await tab_1.disconnect()
    await tab_2.disconnect()


async def test_an_anonymous_socket_is_accepted_then_closed_with_4001(db):
    socket = await open_socket(None, connect=False)
    connected, _ = await socket.connect()
    assert connected
    assert (await socket.receive_output())["code"] == 4001


@pytest.mark.parametrize("origin", ["http://evil.example", None])
async def test_a_socket_from_a_foreign_or_missing_origin_is_refused_at_the_handshake(alice, origin):
    socket = await open_socket(alice, origin=origin, connect=False)
    connected, _ = await socket.connect()
    assert not connected
    assert not await online_ids()


@pytest.mark.parametrize("room", ["has space", "a" * 51, "semi;colon", "%3Cscript%3E"])
async def test_an_invalid_room_name_is_accepted_then_closed_with_4004_and_a_reason(alice, room):
    socket = await open_socket(alice, room, connect=False)
    connected, _ = await socket.connect()
    assert connected
    error = await socket.receive_from()
    assert "Room names are 1 to 50" in visible_text(error)
    assert (await socket.receive_output())["code"] == 4004


async def test_room_names_are_case_insensitive_on_the_socket(alice, bob):
    alice_socket = await joined(alice, "General")
    bob_socket = await joined(bob, "general")
    await send_message(bob_socket, "same room")
    await receive_until(alice_socket, has_message("same room"))
    await alice_socket.disconnect()
    await bob_socket.disconnect()


@pytest.mark.redis
@pytest.mark.parametrize("channel_layer", ["redis"], indirect=True)
async def test_an_idle_socket_outlives_redis_read_timeouts(alice, bob):
    """redis-py's socket timeout must not kill the layer's blocking reads (channels_redis#422)."""
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    await asyncio.sleep(11)
    await send_message(alice_socket, "still connected after 11 s")
    await receive_until(bob_socket, has_message("still connected after 11 s"))
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_typing_is_shown_to_the_others_never_to_the_typist_and_cleared_by_the_message(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    await drain(alice_socket)
    typing = json.dumps({"typing": True, "HEADERS": {"HX-Trigger": None}})

    await alice_socket.send_to(text_data=typing)
    notice = await receive_until(bob_socket, lambda f: "is typing" in f)
    assert visible_text(notice) == "alice is typing…"
    assert f'id="typing-{alice.pk}"' in notice
    assert await hears_only_presence(alice_socket, quiet=0.3)

    await alice_socket.send_to(text_data=typing)  # within the throttle: not forwarded
    assert await hears_only_presence(bob_socket, quiet=0.3)
    await send_message(alice_socket, "done typing")
    frame = await receive_until(bob_socket, has_message("done typing"))
    assert f'<span id="typing-{alice.pk}" hx-swap-oob="delete">' in frame
    assert await sync_to_async(Message.objects.count)() == 1
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def open_directory(user) -> WebsocketCommunicator:
    headers = [(b"origin", ORIGIN.encode())]
    if user is not None:
        headers.append((b"cookie", (await sync_to_async(session_cookie)(user)).encode()))
    socket = WebsocketCommunicator(application, "/ws/directory/", headers=headers)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    return socket


async def test_the_directory_socket_refuses_anonymous_users_with_4001(db):
    socket = await open_directory(None)
    assert (await socket.receive_output())["code"] == 4001


async def test_the_live_directory_shows_new_rooms_online_counts_and_activity(alice, bob):
    directory = await open_directory(alice)
    initial = await receive_until(directory, lambda f: 'id="room-list"' in f)
    assert 'hx-swap-oob="true"' in initial

    bob_socket = await joined(bob, "fresh-room")
    room_id = await _room_id("fresh-room")
    added = await receive_until(directory, lambda f: "afterbegin:#room-list" in f)
    assert 'id="room-fresh-room"' in added
    assert "#fresh-room" in visible_text(added)
    count = await receive_until(directory, lambda f: f'id="online-{room_id}"' in f)
    assert visible_text(count) == "1"

    await send_message(bob_socket, "anyone?")
    activity = await receive_until(directory, lambda f: f'id="activity-{room_id}"' in f)
    assert "last message" in visible_text(activity)
    assert "anyone?" not in activity

    await bob_socket.disconnect()
    count = await receive_until(directory, lambda f: f'id="online-{room_id}"' in f)
    assert visible_text(count) == "0"
    await directory.disconnect()


async def test_a_private_message_does_not_show_as_room_activity_in_the_directory(alice, bob):
    alice_socket, _ = await joined(alice), await joined(bob)
    directory = await open_directory(bob)
    await receive_until(directory, lambda f: 'id="room-list"' in f)
    await drain(directory)  # the online counts of the joins just made
    await send_message(alice_socket, "/pm bob quiet")
    await receive_until(alice_socket, has_message("quiet"))
    # Only bob's sidebar hears of it: the conversation with alice appears there, one unread. No room row changes.
    frames = [frame for frame in await drain(directory) if not is_presence(frame)]
    assert len(frames) == 1
    assert 'data-user="alice"' in frames[0]
    assert "quiet" not in frames[0]
    assert element_ids(frames[0])[0].startswith("sidebar-")
    await directory.disconnect()


async def test_a_consumer_cancelled_by_the_server_still_stops_counting(alice, bob):
    """daphne cancels an application that outlives its close timeout; presence must not leak."""
    bob_socket, alice_socket = await joined(bob), await joined(alice)
    await receive_until(bob_socket, arrived(alice))

    alice_socket.future.cancel()

    await receive_until(bob_socket, departed(alice))
    assert alice.pk not in await online_ids()
    await bob_socket.disconnect()


async def test_an_edit_and_a_deletion_replace_the_message_on_every_open_page(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    await send_message(alice_socket, "first draft")
    await receive_until(bob_socket, has_message("first draft"))
    message = await sync_to_async(Message.objects.get)()

    await sync_to_async(services.messages.message_edit)(message=message, by=alice, body="second draft")
    edited = await receive_until(bob_socket, lambda f: f'id="message-{message.pk}"' in f)
    assert 'hx-swap-oob="true"' in edited
    assert "second draft" in visible_text(edited)
    assert "(edited)" in visible_text(edited)

    await sync_to_async(services.messages.message_retract)(message=message, by=alice)
    retracted = await receive_until(bob_socket, lambda f: f'id="message-{message.pk}"' in f)
    assert "message deleted" in visible_text(retracted)
    assert "second draft" not in retracted
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_a_mention_is_marked_for_the_mentioned_and_flagged_in_their_live_directory(alice, bob, carol):
    alice_socket = await joined(alice)
    bob_directory, carol_directory = await open_directory(bob), await open_directory(carol)
    for directory in (bob_directory, carol_directory):
        await receive_until(directory, lambda f: 'id="room-list"' in f)

    await send_message(alice_socket, "lunch, @bob?")

    frame = await receive_until(alice_socket, has_message("lunch"))
    assert f"mentions-u{bob.pk}" in frame
    assert '<span class="mention">@bob</span>' in frame
    room_id = await _room_id("lobby")
    flag = await receive_until(bob_directory, lambda f: f'id="mentioned-{room_id}"' in f)
    assert visible_text(flag) == "you were mentioned"
    assert not any(f'id="mentioned-{room_id}"' in f for f in await drain(carol_directory))
    await alice_socket.disconnect()


async def test_a_room_socket_marks_the_room_read_and_shows_what_is_new(alice, bob):
    bob_socket = await joined(bob)
    alice_socket = await joined(alice)
    await alice_socket.disconnect()
    await send_message(bob_socket, "while alice was away")
    await receive_until(bob_socket, has_message("while alice was away"))

    alice_socket = await open_socket(alice)
    log = await receive_until(alice_socket, lambda f: 'id="messages"' in f)
    after_divider = log.split('id="unread-divider"')[1].split(">", 1)[1]
    assert visible_text(after_divider).startswith("New since your last visit bob")
    assert "while alice was away" in after_divider
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_a_live_message_counts_as_unread_in_the_directories_of_those_who_visited(alice, bob):
    bob_socket = await joined(bob)
    alice_socket = await joined(alice)
    await alice_socket.disconnect()
    directory = await open_directory(alice)
    room_id = await _room_id("lobby")
    listing = await receive_until(directory, lambda f: 'id="room-list"' in f)
    assert f'id="unread-{room_id}"' in listing

    await send_message(bob_socket, "ping")

    frame = await receive_until(directory, lambda f: f"beforeend:#unread-{room_id}" in f)
    assert "<i></i>" in frame
    await bob_socket.disconnect()


async def test_a_burst_of_messages_reaches_each_directory_as_one_frame_with_an_unread_mark_per_message(alice, bob):
    """Directories are told once a second per room, not once per message; the author's own messages are not news."""
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    room_id = await _room_id("lobby")
    directories = {}
    for user in (alice, bob):
        directories[user] = await open_directory(user)
        await receive_until(directories[user], lambda f: 'id="room-list"' in f)
        await drain(directories[user])  # the online counts of the joins just made

    for text in ("one", "two", "three"):
        await send_message(alice_socket, text)

    for user, marks in ((bob, 3), (alice, 0)):
        frames = [f for f in await drain(directories[user], quiet=1.5) if f'id="activity-{room_id}"' in f]
        # One frame for the burst; two when it straddles a tick on a busy machine, never one per message.
        assert 1 <= len(frames) <= 2, (user, frames)
        assert sum(frame.count("<i></i>") for frame in frames) == marks
        await directories[user].disconnect()
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_the_first_message_of_a_day_arrives_after_a_day_separator_and_the_next_one_without(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)

    def yesterday_message() -> None:
        message = services.messages.message_create(
            room=services.rooms.room_get_or_create(name="lobby"), author=bob, body="before midnight"
        )
        Message.objects.filter(pk=message.pk).update(created_at=message.created_at - timedelta(days=1))

    await sync_to_async(yesterday_message)()
    await drain(bob_socket)

    await send_message(alice_socket, "first today")
    first = await receive_until(bob_socket, has_message("first today"))
    await send_message(alice_socket, "second today")
    second = await receive_until(bob_socket, has_message("second today"))

    assert 'class="day-separator"' in first
    assert "Today" in visible_text(first)
    assert 'class="day-separator"' not in second
    await alice_socket.disconnect()
    await bob_socket.disconnect()


def send_lines(socket: WebsocketCommunicator, text: str):
    """Send a frame as the ws extension does for the multi-line box's form."""
    headers = {"HX-Request": "true", "HX-Trigger": "message-lines", "HX-Trigger-Name": None, "HX-Target": None}
    return socket.send_to(text_data=json.dumps({"message": text, "HEADERS": headers}))


async def test_a_message_of_several_lines_keeps_them_and_its_box_comes_back_open_and_empty(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)

    await send_lines(alice_socket, "```\nfor line in log:\n    print(line)\n```\n> and a quote")
    frame = await receive_until(bob_socket, has_message("print(line)"))
    assert "<pre><code>for line in log:\n    print(line)\n</code></pre>" in frame
    assert "<blockquote>" in frame
    answer = await receive_until(alice_socket, lambda f: 'id="message-lines"' in f)
    assert re.search(r'<details class="attach lines" open>', answer)
    assert re.search(r"<textarea[^>]*></textarea>", answer)
    assert 'id="message-form"' not in answer  # the one-line box keeps whatever it holds

    await send_lines(alice_socket, "/pn bob\nsecret")
    refused = await receive_until(alice_socket, lambda f: 'id="chat-error"' in f and "no command" in f)
    assert re.search(r"<textarea[^>]*>/pn bob\nsecret</textarea>", refused)
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_a_message_following_its_authors_own_reads_as_part_of_it_and_anothers_does_not(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)

    frames = []
    for socket, text in ((alice_socket, "first"), (alice_socket, "second"), (bob_socket, "third")):
        await send_message(socket, text)
        frames.append(await receive_until(bob_socket, has_message(text)))

    assert ["message--continued" in frame for frame in frames] == [False, True, False]
    await alice_socket.disconnect()
    await bob_socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
@pytest.mark.parametrize("path", ["/ws/chat/lobby/", "/ws/directory/"])
async def test_a_stopping_process_refuses_new_sockets_of_every_kind_at_the_handshake(path, monkeypatch):
    """While the server stops, a room page's or a directory's new socket is refused (the proxy or the browser tries
    another process), so no new page holds the stop up."""
    socket = WebsocketCommunicator(application, path, headers=[(b"origin", ORIGIN.encode())])
    connected, _ = await socket.connect(timeout=5)
    assert connected  # then closed, for want of a session: the handshake itself is taken
    await socket.disconnect()

    monkeypatch.setattr(consumers_base, "_server_restarting", True)
    socket = WebsocketCommunicator(application, path, headers=[(b"origin", ORIGIN.encode())])
    connected, _ = await socket.connect(timeout=5)
    assert not connected


async def test_a_stopping_process_takes_no_more_frames_on_its_open_sockets(alice, monkeypatch):
    """Once the server stops, a frame is left in the browser's box (sent again after the reconnect), even on a socket
    whose own quiescing has not come yet: the process stops taking frames at once, not socket by socket."""
    socket = await joined(alice)
    monkeypatch.setattr(consumers_base, "_server_restarting", True)
    await send_message(socket, "sent as the server stops")

    assert await hears_only_presence(socket, quiet=0.5)
    assert not await sync_to_async(Message.objects.exists)()
    await socket.disconnect()


async def test_a_snapshot_asked_for_while_another_is_made_waits_for_it_and_nothing_held_is_lost():
    """The layer comes back while a join's snapshot is being made: the second snapshot is made after the first,
    and what came meanwhile is sent after the snapshot it came during (both once; no socket crashes)."""
    consumer = consumers_base.HubConsumer()
    consumer.snapshotting = asyncio.Lock()
    sent: list[str] = []

    async def send(text_data: str) -> None:
        sent.append(text_data)

    async def deliver(frame) -> None:
        sent.append(frame.text)

    consumer.send, consumer.deliver = send, deliver
    join_made = asyncio.Event()

    async def join_snapshot() -> str:
        await join_made.wait()
        return "the join's snapshot"

    async def layer_back_snapshot() -> str:
        return "the snapshot after the layer's return"

    first = asyncio.create_task(consumer.send_snapshot(join_snapshot))
    await asyncio.sleep(0)
    second = asyncio.create_task(consumer.send_snapshot(layer_back_snapshot))
    await asyncio.sleep(0)
    consumer.held.append(TypingNoticed(html="a live event", typist_id=2))
    join_made.set()
    await asyncio.gather(first, second)

    assert sent == ["the join's snapshot", "a live event", "the snapshot after the layer's return"]
    assert consumer.held is None
