"""Threads: replies beside a message, their page, the live summary, following, /threads/, and the query counts that
must not grow with replies or threads. What a user sees: pages, status codes, socket frames."""

from __future__ import annotations

import json
import re

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from chat import services
from chat.errors import ChatError
from chat.models import Message, Room, ThreadFollow
from chat.tests.conftest import drain, joined, receive_until
from chat.tests.test_conversations import (
    disconnect,
    joined_dm,
    logged_in,
    open_directory,
    room_joined,
    socket_to,
    tree,
)
from chat.tests.test_notifications import page_title, title_update

pytestmark = pytest.mark.django_db

live = pytest.mark.usefixtures("channel_layer")
live_db = pytest.mark.django_db(transaction=True)


def reply(room: Room, author: User, parent: Message, body: str) -> Message:
    return services.messages.message_post(room=room, author=author, text=body, thread=parent.pk)


def thread_frame(text: str, parent_id: int):
    return lambda frame: f"beforeend:#thread-replies-{parent_id}" in frame and text in frame


def send_reply(socket, text: str, parent_id: int | str):
    headers = {"HX-Request": "true", "HX-Trigger": "thread-form", "HX-Trigger-Name": None, "HX-Target": None}
    return socket.send_to(text_data=json.dumps({"message": text, "thread": str(parent_id), "HEADERS": headers}))


@pytest.fixture
def lobby(alice: User, bob: User) -> Room:
    room = room_joined(alice, "lobby")
    services.memberships.room_member_join(room=room, user=bob)
    return room


# --- Storing replies ---------------------------------------------------------------------------------------------


def test_a_reply_is_stored_with_its_parent_and_stays_out_of_the_conversations_log(alice, bob, lobby):
    parent = services.messages.message_create(room=lobby, author=alice, body="shall we ship on Friday?")
    answer = reply(lobby, bob, parent, "yes, after the review")

    assert answer.parent_id == parent.pk
    parent.refresh_from_db()
    assert (parent.reply_count, parent.last_repliers) == (1, [bob.username])
    page = logged_in(alice).get("/chat/lobby/").content.decode()
    log = tree(page).find(id="messages")
    assert "shall we ship on Friday?" in log.text
    assert "yes, after the review" not in log.text
    summary = tree(page).find(id=f"message-{parent.pk}").find(cls="thread-summary")
    assert summary is not None
    assert summary.text.startswith("1 reply")


@pytest.mark.parametrize(
    "target",
    ["a reply", "unknown", "another conversation", "deleted", "not a number"],
)
def test_a_reply_to_a_reply_an_unknown_a_foreign_or_a_deleted_message_is_refused_and_nothing_stored(
    alice, bob, lobby, target
):
    parent = services.messages.message_create(room=lobby, author=alice, body="the plan")
    child = reply(lobby, bob, parent, "agreed")
    elsewhere = room_joined(alice, "elsewhere")
    foreign = services.messages.message_create(room=elsewhere, author=alice, body="other room")
    gone = services.messages.message_create(room=lobby, author=alice, body="soon deleted")
    services.messages.message_retract(message=gone, by=alice)
    thread = {
        "a reply": child.pk,
        "unknown": 999_999,
        "another conversation": foreign.pk,
        "deleted": gone.pk,
        "not a number": "12abc",
    }[target]
    before = Message.objects.count()

    with pytest.raises(ChatError):
        services.messages.message_post(room=lobby, author=bob, text="into the void", thread=thread)

    assert Message.objects.count() == before


def test_the_author_repliers_and_people_mentioned_follow_the_thread(alice, bob, carol, lobby):
    services.memberships.room_member_join(room=lobby, user=carol)
    parent = services.messages.message_create(room=lobby, author=alice, body="who reviews?")
    reply(lobby, bob, parent, "me, with @carol")
    followers = set(ThreadFollow.objects.filter(thread=parent).values_list("user__username", flat=True))
    assert followers == {"alice", "bob", "carol"}


# --- The thread's page ---------------------------------------------------------------------------------------------


def test_the_thread_page_shows_the_message_its_replies_and_a_reply_form_and_reads_the_replies(alice, bob, lobby):
    parent = services.messages.message_create(room=lobby, author=alice, body="first")
    replies = [reply(lobby, bob, parent, f"answer {n}") for n in range(3)]
    client = logged_in(alice)
    assert page_title(client.get("/chat/").content.decode()).startswith("(3) ")

    page = tree(client.get(f"/chat/lobby/threads/{parent.pk}/").content.decode())

    thread = page.find(id="thread")
    assert thread.find(id=f"message-{parent.pk}") is not None
    shown = page.find(id=f"thread-replies-{parent.pk}")
    assert [node.attrs["id"] for node in shown.find_all("article")] == [f"message-{m.pk}" for m in replies]
    form = page.find("form", id="thread-form")
    assert "ws-send" in form.attrs
    fields = {node.attrs.get("name"): node.attrs.get("value") for node in form.find_all("input")}
    assert re.fullmatch(r"[0-9a-f]{32}", fields.pop("key"))  # the reply is stored once, however often it is sent
    assert fields == {"thread": str(parent.pk), "message": ""}
    # The log is beside the thread; the thread's first message shows once, in the thread (one element per id).
    log = page.find(id="messages")
    assert log.find(id=f"message-{parent.pk}") is None
    assert "open in the thread" in log.find(cls="thread-open").text
    assert len(page.find_all(id=f"message-{parent.pk}")) == 1
    section = page.find("section", cls="room")
    assert section.attrs["ws-connect"] == f"/ws/chat/lobby/?thread={parent.pk}"
    assert page_title(client.get("/chat/").content.decode()) == "Rooms · Chat"


def test_a_reply_or_an_unknown_id_or_another_conversations_message_has_no_thread_page(alice, bob, lobby):
    parent = services.messages.message_create(room=lobby, author=alice, body="first")
    child = reply(lobby, bob, parent, "second")
    other = room_joined(alice, "other")
    foreign = services.messages.message_create(room=other, author=alice, body="there")
    client = logged_in(alice)
    for path in (
        f"/chat/lobby/threads/{child.pk}/",
        "/chat/lobby/threads/999999/",
        f"/chat/lobby/threads/{foreign.pk}/",
    ):
        assert client.get(path).status_code == 404, path


def test_a_private_rooms_threads_are_not_found_by_others(alice, bob):
    room = room_joined(alice, "plans")
    services.memberships.room_privacy_set(room=room, private=True, by=alice)
    parent = services.messages.message_create(room=room, author=alice, body="secret")
    assert logged_in(bob).get(f"/chat/plans/threads/{parent.pk}/").status_code == 404
    assert Client().get(f"/chat/plans/threads/{parent.pk}/").status_code == 302


def test_a_direct_conversations_thread_link_leads_each_person_to_their_own_page(alice, bob):
    dm = services.rooms.direct_room_get_or_create(user=alice, peer=bob)
    parent = services.messages.message_create(room=dm, author=alice, body="lunch?")
    for user, other in ((alice, "bob"), (bob, "alice")):
        page = tree(logged_in(user).get(f"/dm/{other}/").content.decode())
        link = page.find(id=f"message-{parent.pk}").find("a", cls="thread-link")
        assert link.attrs["href"] == f"/dm/{other}/threads/{parent.pk}/"
        assert logged_in(user).get(link.attrs["href"]).status_code == 200


def test_every_message_of_the_log_that_is_not_a_reply_links_to_its_thread(alice, lobby):
    messages = [services.messages.message_create(room=lobby, author=alice, body=f"m{n}") for n in range(3)]
    page = tree(logged_in(alice).get("/chat/lobby/").content.decode())
    for message in messages:
        link = page.find(id=f"message-{message.pk}").find("a", cls="thread-link")
        assert link.attrs["href"] == f"/chat/lobby/threads/{message.pk}/"


# --- /threads/ and the sidebar ---------------------------------------------------------------------------------------


def test_threads_lists_followed_threads_with_replies_latest_first_with_unread_counts(alice, bob, carol, lobby):
    services.memberships.room_member_join(room=lobby, user=carol)
    quiet = services.messages.message_create(room=lobby, author=alice, body="nobody answers this")
    older = services.messages.message_create(room=lobby, author=alice, body="older thread")
    newer = services.messages.message_create(room=lobby, author=alice, body="newer thread")
    reply(lobby, alice, older, "my own")  # never unread to alice
    reply(lobby, bob, older, "one")
    reply(lobby, bob, newer, "two")
    reply(lobby, carol, newer, "three")

    page = tree(logged_in(alice).get("/threads/").content.decode())

    rows = [li for li in page.find(id="threads").find_all("li") if "data-thread" in li.attrs]
    assert [li.attrs["data-thread"] for li in rows] == [str(newer.pk), str(older.pk)]
    assert [li.find(cls="unread").text for li in rows] == ["2", "1"]
    assert str(quiet.pk) not in {li.attrs["data-thread"] for li in rows}
    sidebar_threads = page.find(id="sidebar-threads")
    assert sidebar_threads.attrs["href"] == "/threads/"
    assert sidebar_threads.find(cls="unread").text == "3"


def test_query_counts_do_not_grow_with_replies_or_threads(alice, bob, lobby, settings):
    settings.CHAT_RATE_LIMIT_MESSAGES = 1000
    client = logged_in(alice)

    def counts() -> tuple[int, int, int]:
        parent = Message.objects.filter(room=lobby, parent=None).order_by("id").first()
        found = []
        for path in ("/chat/lobby/", f"/chat/lobby/threads/{parent.pk}/", "/threads/"):
            with CaptureQueriesContext(connection) as queries:
                assert client.get(path).status_code == 200
            found.append(len(queries))
        return tuple(found)

    first = services.messages.message_create(room=lobby, author=alice, body="thread 0")
    reply(lobby, bob, first, "a reply")
    small = counts()
    for n in range(1, 6):
        parent = services.messages.message_create(room=lobby, author=alice, body=f"thread {n}")
        for k in range(4):
            reply(lobby, bob, parent, f"reply {k}")
    for k in range(6):
        reply(lobby, bob, first, f"more {k}")
    assert counts() == small


# --- Live ----------------------------------------------------------------------------------------------------------


@live_db
@live
async def test_a_reply_reaches_the_threads_open_pages_not_the_log_and_the_summary_reaches_the_room_pages(
    alice, bob, lobby
):
    parent = await sync_to_async(services.messages.message_create)(room=lobby, author=alice, body="the question")
    alice_room = await joined(alice, "lobby")
    bob_thread = await socket_to(bob, f"/ws/chat/lobby/?thread={parent.pk}")
    frame = await receive_until(bob_thread, lambda f: 'id="thread"' in f)
    # The log beside the thread, where the thread's first message is only named: it is shown once, in the thread.
    page = tree(frame)
    assert page.find(id="messages").find(cls="thread-open") is not None
    assert len(page.find_all(id=f"message-{parent.pk}")) == 1

    await send_reply(bob_thread, "the answer", parent.pk)

    frame = await receive_until(bob_thread, thread_frame("the answer", parent.pk))
    summary = await receive_until(alice_room, lambda f: f'id="thread-link-{parent.pk}"' in f)
    assert tree(summary).find(cls="thread-summary").text.startswith("1 reply from bob")
    frames = [summary, *await drain(alice_room)]
    assert not [f for f in frames if "the answer" in f]

    # The log beside the thread is live too.
    await alice_room.send_to(text_data=json.dumps({"message": "meanwhile"}))
    await receive_until(bob_thread, lambda f: "beforeend:#messages" in f and "meanwhile" in f)
    await disconnect(alice_room, bob_thread)


@live_db
@live
async def test_a_reply_on_the_threads_page_gets_a_fresh_reply_form_and_a_bad_thread_an_error(alice, bob, lobby):
    parent = await sync_to_async(services.messages.message_create)(room=lobby, author=alice, body="the question")
    bob_thread = await socket_to(bob, f"/ws/chat/lobby/?thread={parent.pk}")
    await receive_until(bob_thread, lambda f: 'id="thread"' in f)

    await send_reply(bob_thread, "fine", parent.pk)
    frame = await receive_until(bob_thread, lambda f: 'id="thread-form"' in f)
    assert f'name="thread" value="{parent.pk}"' in frame

    await send_reply(bob_thread, "lost", 999_999)
    frame = await receive_until(bob_thread, lambda f: 'id="chat-error"' in f and "nothing was sent" in f)
    assert await sync_to_async(Message.objects.filter(body="lost").exists)() is False
    await disconnect(bob_thread)


@live_db
@live
async def test_a_reply_counts_for_followers_in_the_sidebar_and_title_live_but_not_for_its_author(alice, bob, lobby):
    parent = await sync_to_async(services.messages.message_create)(room=lobby, author=alice, body="thoughts?")
    alice_directory = await open_directory(alice)
    bob_thread = await socket_to(bob, f"/ws/chat/lobby/?thread={parent.pk}")
    await receive_until(bob_thread, lambda f: 'id="thread"' in f)

    await send_reply(bob_thread, "some", parent.pk)

    frame = await receive_until(alice_directory, lambda f: 'id="sidebar-threads"' in f)
    assert tree(frame).find(id="sidebar-threads").find(cls="unread").text == "1"
    assert title_update(frame) == "(1) Rooms · Chat"
    assert not [f for f in await drain(bob_thread) if 'id="sidebar-threads"' in f]
    await disconnect(alice_directory, bob_thread)


@live_db
@live
async def test_a_socket_naming_a_reply_or_an_unknown_thread_is_closed(alice, bob, lobby):
    parent = await sync_to_async(services.messages.message_create)(room=lobby, author=alice, body="q")
    child = await sync_to_async(reply)(lobby, bob, parent, "a")
    for thread in (child.pk, 999_999, "x"):
        socket = await socket_to(alice, f"/ws/chat/lobby/?thread={thread}")
        output = await socket.receive_output(5)
        while output["type"] != "websocket.close":
            output = await socket.receive_output(5)
        assert output["code"] == 4003


@live_db
@live
async def test_a_dm_thread_page_works_over_the_direct_socket(alice, bob):
    dm = await sync_to_async(services.rooms.direct_room_get_or_create)(user=alice, peer=bob)
    parent = await sync_to_async(services.messages.message_create)(room=dm, author=alice, body="dm question")
    alice_dm = await joined_dm(alice, "bob")
    bob_thread = await socket_to(bob, f"/ws/dm/alice/?thread={parent.pk}")
    await receive_until(bob_thread, lambda f: 'id="thread"' in f)

    await send_reply(bob_thread, "dm answer", parent.pk)

    await receive_until(bob_thread, thread_frame("dm answer", parent.pk))
    await receive_until(alice_dm, lambda f: f'id="thread-link-{parent.pk}"' in f)
    await disconnect(alice_dm, bob_thread)


@live_db
@live
async def test_a_direct_conversations_live_thread_links_name_each_readers_other_person(alice, bob):
    dm = await sync_to_async(services.rooms.direct_room_get_or_create)(user=alice, peer=bob)
    earlier = await sync_to_async(services.messages.message_create)(room=dm, author=bob, body="earlier")
    alice_page, bob_page = await joined_dm(alice, "bob"), await joined_dm(bob, "alice")
    # Both pages share one rendered log when they are in one process: each still gets its own links.
    for page, other in ((alice_page, "bob"), (bob_page, "alice")):
        await page.send_to(text_data=json.dumps({"message": f"ping {other}"}))
    for page, other in ((alice_page, "bob"), (bob_page, "alice")):
        for text in ("ping bob", "ping alice"):
            frame = await receive_until(page, lambda f, text=text: "beforeend:#messages" in f and text in f)
            links = [link.attrs["href"] for link in tree(frame).find_all("a", cls="thread-link")]
            assert links
            assert all(link.startswith(f"/dm/{other}/threads/") for link in links), links
        again = await socket_to(alice if other == "bob" else bob, f"/ws/dm/{other}/")
        frame = await receive_until(again, lambda f: 'id="messages"' in f)
        link = tree(frame).find(id=f"message-{earlier.pk}").find("a", cls="thread-link")
        assert link.attrs["href"] == f"/dm/{other}/threads/{earlier.pk}/"
        assert Room.PEER_PLACEHOLDER not in frame
        await disconnect(again)
    await disconnect(alice_page, bob_page)


def test_a_file_shared_in_a_thread_is_a_reply_and_a_bad_thread_stores_nothing(alice, bob, lobby):
    parent = services.messages.message_create(room=lobby, author=alice, body="the plan")
    client = logged_in(bob)
    upload = SimpleUploadedFile("plan.txt", b"step one\n", content_type="text/plain")
    response = client.post(
        "/chat/lobby/attachments/", {"file": upload, "caption": "v2", "thread": str(parent.pk)}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert 'id="thread-upload-form"' in response.content.decode()
    stored = Message.objects.get(body="v2")
    assert stored.parent_id == parent.pk
    assert stored.attachment_or_none.name == "plan.txt"
    parent.refresh_from_db()
    assert parent.reply_count == 1
    page = tree(client.get(f"/chat/lobby/threads/{parent.pk}/").content.decode())
    assert page.find(id=f"thread-replies-{parent.pk}").find(cls="attachment-name").text == "plan.txt"
    assert page.find(id="messages").find(id=f"message-{stored.pk}") is None

    # Without htmx, the thread's page comes back; a bad thread is refused with a sentence, and nothing is stored.
    upload = SimpleUploadedFile("other.txt", b"x", content_type="text/plain")
    response = client.post("/chat/lobby/attachments/", {"file": upload, "caption": "lost", "thread": str(stored.pk)})
    assert response.status_code == 400
    assert "cannot have replies" in tree(response.content.decode()).find(id="chat-error").text
    assert not Message.objects.filter(body="lost").exists()
    upload = SimpleUploadedFile("plan.txt", b"step two\n", content_type="text/plain")
    response = client.post("/chat/lobby/attachments/", {"file": upload, "caption": "v3", "thread": str(parent.pk)})
    assert response["Location"] == f"/chat/lobby/threads/{parent.pk}/"


def test_a_thread_link_swaps_the_conversations_part_in_its_page_and_is_a_plain_link_in_a_messages_history(
    alice, lobby
):
    message = services.messages.message_create(room=lobby, author=alice, body="look back")
    client = logged_in(alice)
    room_link = tree(client.get("/chat/lobby/").content.decode()).find(id=f"thread-link-{message.pk}")
    assert (room_link.attrs["hx-boost"], room_link.attrs["hx-target"], room_link.attrs["hx-select"]) == (
        "true",
        "#room",
        "#room",
    )
    page = tree(client.get(f"/chat/lobby/messages/{message.pk}/").content.decode())
    assert page.find(id="room") is None
    history_link = page.find(id=f"thread-link-{message.pk}")
    assert history_link.attrs["href"] == f"/chat/lobby/threads/{message.pk}/"
    assert "hx-boost" not in history_link.attrs
    # A boosted request gets the conversation's part alone.
    part = client.get(f"/chat/lobby/threads/{message.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_BOOSTED="true")
    assert part.content.decode().lstrip().startswith('<section id="room"')
    assert "HX-Request" in part["Vary"]
