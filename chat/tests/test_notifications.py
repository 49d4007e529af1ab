"""Notification levels (all, mentions, nothing) and the count of what notifies a user in every page's title: the
pages, the live updates over their sockets, and the read marks that open pages advance."""

from __future__ import annotations

import asyncio
import re

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from accounts.models import User
from chat import services
from chat.consumers import reading
from chat.models import Membership, Room
from chat.tests.conftest import drain, joined, receive_until, send_message
from chat.tests.test_conversations import (
    badge_update,
    disconnect,
    joined_dm,
    logged_in,
    open_directory,
    room_joined,
    room_named,
    sidebar_of,
    tree,
)

pytestmark = pytest.mark.django_db

live = pytest.mark.usefixtures("channel_layer")
live_db = pytest.mark.django_db(transaction=True)

TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.DOTALL)


def page_title(html: str) -> str:
    found = TITLE_RE.search(html)
    assert found is not None, "the page has no <title>"
    return " ".join(found[1].split())


def title_update(frame: str) -> str | None:
    """The text a frame swaps into the page's <title>, or None: not such a frame."""
    for element in tree(frame).walk():
        if element.attrs.get("hx-swap-oob") == "innerHTML:#page-title":
            return element.text
    return None


def level_of(user: User, room: Room) -> str:
    return Membership.objects.get(user=user, room=room).level


# --- Levels --------------------------------------------------------------------------------------------------------


def test_a_room_notifies_of_mentions_and_a_direct_conversation_of_everything_by_default(alice, bob):
    room = room_joined(alice, "lobby")
    dm = services.rooms.direct_room_get_or_create(user=alice, peer=bob)
    assert level_of(alice, room) == "mentions"
    assert (level_of(alice, dm), level_of(bob, dm)) == ("all", "all")

    page = logged_in(alice).get("/chat/lobby/notifications/").content.decode()
    checked = [node.attrs["value"] for node in tree(page).find_all("input") if "checked" in node.attrs]
    assert checked == ["mentions"]
    page = logged_in(alice).get("/dm/bob/notifications/").content.decode()
    checked = [node.attrs["value"] for node in tree(page).find_all("input") if "checked" in node.attrs]
    assert checked == ["all"]


def test_a_member_sets_a_level_with_a_form_that_needs_csrf(alice):
    room_joined(alice, "lobby")
    client = logged_in(alice, enforce_csrf=True)
    assert client.post("/chat/lobby/notifications/", {"level": "nothing"}).status_code == 403
    client.get("/chat/lobby/notifications/")
    token = client.cookies["csrftoken"].value

    response = client.post("/chat/lobby/notifications/", {"level": "nothing", "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert response["Location"] == "/chat/lobby/notifications/"
    assert level_of(alice, Room.objects.get(name="lobby")) == "nothing"
    page = client.get(response["Location"]).content.decode()
    assert "muted, nothing in it notifies you" in page


def test_an_unknown_level_is_refused_with_a_sentence_and_changes_nothing(alice):
    room = room_joined(alice, "lobby")
    response = logged_in(alice).post("/chat/lobby/notifications/", {"level": "loud"})
    assert response.status_code == 400
    assert "Choose one of all, mentions, nothing." in response.content.decode()
    assert level_of(alice, room) == "mentions"


def test_the_notifications_page_of_a_private_room_is_not_found_by_others_and_needs_a_login(alice, bob):
    room = room_joined(alice, "plans")
    services.memberships.room_privacy_set(room=room, private=True, by=alice)
    assert logged_in(bob).get("/chat/plans/notifications/").status_code == 404
    assert logged_in(bob).post("/chat/plans/notifications/", {"level": "all"}).status_code == 404
    assert not Membership.objects.filter(user=bob, room=room).exists()
    assert Client().get("/chat/plans/notifications/").status_code == 302


def test_setting_a_level_on_a_room_one_has_not_opened_joins_it(alice, bob):
    room_joined(alice, "lobby")
    logged_in(bob).post("/chat/lobby/notifications/", {"level": "all"})
    assert level_of(bob, Room.objects.get(name="lobby")) == "all"


# --- The title and the sidebar, on the pages -------------------------------------------------------------------------


def test_the_title_counts_mentions_direct_messages_and_rooms_set_to_all_never_ones_own_or_muted(alice, bob, carol):
    lobby, news, quiet = (room_joined(alice, name) for name in ("lobby", "news", "quiet"))
    for room in (lobby, news, quiet):
        services.memberships.room_member_join(room=room, user=bob)
    services.memberships.notification_level_set(room=news, user=alice, level="all")
    services.memberships.notification_level_set(room=quiet, user=alice, level="nothing")
    client = logged_in(alice)
    assert page_title(client.get("/chat/").content.decode()) == "Rooms · Chat"

    services.messages.message_create(room=lobby, author=bob, body="plain, not counted")
    services.messages.message_create(room=lobby, author=bob, body="@alice counted")
    services.messages.message_create(room=news, author=bob, body="counted: the room is at all")
    services.messages.message_create(room=quiet, author=bob, body="@alice muted: not counted")
    services.messages.message_create(room=lobby, author=alice, body="my own, @alice, not counted")
    dm = services.rooms.direct_room_get_or_create(user=carol, peer=alice)
    services.messages.message_create(room=dm, author=carol, body="counted")

    page = client.get("/chat/").content.decode()
    assert page_title(page) == "(3) Rooms · Chat"
    rooms, people = sidebar_of(page)
    assert (rooms["lobby"].unread, rooms["lobby"].mentioned) == (2, True)
    assert rooms["news"].unread == 1
    assert (rooms["quiet"].unread, rooms["quiet"].mentioned) == (None, False)
    assert people["carol"].unread == 1
    quiet_entry = tree(page).find(id=f"sidebar-{quiet.pk}")
    assert "muted" in quiet_entry.classes
    assert "muted" not in tree(page).find(id=f"sidebar-{lobby.pk}").classes

    # The page of a conversation does not count it (it is being read), and a page without a sidebar counts too.
    assert page_title(client.get("/chat/lobby/").content.decode()) == "(2) #lobby · Chat"
    assert page_title(client.get("/accounts/password/change/").content.decode()).startswith("(3) ")
    assert page_title(logged_in(bob).get("/chat/").content.decode()) == "Rooms · Chat"


# --- Live --------------------------------------------------------------------------------------------------------


@live_db
@live
async def test_a_message_that_notifies_changes_the_title_of_the_users_other_pages_and_a_plain_one_does_not(alice, bob):
    await disconnect(await joined(alice, "lobby"))
    lobby = await room_named("lobby")
    alice_directory, alice_elsewhere = await open_directory(alice), await joined(alice, "elsewhere")
    bob_lobby = await joined(bob, "lobby")

    await send_message(bob_lobby, "just chatting")
    for page in (alice_directory, alice_elsewhere):
        frames = [await receive_until(page, lambda f: badge_update(f, lobby.pk) is not None), *await drain(page)]
        assert not [title_update(f) for f in frames if title_update(f) is not None]

    await send_message(bob_lobby, "@alice look")
    for page, title in ((alice_directory, "(1) Rooms · Chat"), (alice_elsewhere, "(1) #elsewhere · Chat")):
        frame = await receive_until(page, lambda f: title_update(f) is not None)
        assert title_update(frame) == title
    await disconnect(alice_directory, alice_elsewhere, bob_lobby)


@live_db
@live
async def test_a_muted_conversation_changes_no_badge_and_no_title(alice, bob):
    dm = await sync_to_async(services.rooms.direct_room_get_or_create)(user=bob, peer=alice)
    await sync_to_async(services.messages.message_create)(room=dm, author=bob, body="first")
    await sync_to_async(services.memberships.notification_level_set)(room=dm, user=alice, level="nothing")
    alice_directory = await open_directory(alice)
    bob_dm = await joined_dm(bob, "alice")

    await send_message(bob_dm, "you will not hear of this")
    await send_message(bob_dm, "nor this")

    frames = await drain(alice_directory, quiet=1.0)
    assert not [f for f in frames if badge_update(f, dm.pk) is not None or title_update(f) is not None]
    await disconnect(alice_directory, bob_dm)


@live_db
@live
async def test_opening_a_conversation_clears_its_badge_and_its_share_of_the_title_on_the_users_other_pages(alice, bob):
    dm = await sync_to_async(services.rooms.direct_room_get_or_create)(user=bob, peer=alice)
    await sync_to_async(services.messages.message_create)(room=dm, author=bob, body="are you there?")
    alice_directory = await open_directory(alice)

    alice_dm = await joined_dm(alice, "bob")

    frame = await receive_until(alice_directory, lambda f: badge_update(f, dm.pk) is not None)
    assert badge_update(frame, dm.pk) == (None, False)
    frame = await receive_until(alice_directory, lambda f: title_update(f) is not None)
    assert title_update(frame) == "Rooms · Chat"
    await disconnect(alice_directory, alice_dm)


@live_db
@live
async def test_changing_a_level_counts_the_sidebar_and_title_of_the_users_open_pages_again(alice, bob):
    await disconnect(await joined(alice, "lobby"))
    lobby = await room_named("lobby")
    await sync_to_async(services.messages.message_create)(room=lobby, author=bob, body="@alice one")
    alice_directory = await open_directory(alice)

    await sync_to_async(services.memberships.notification_level_set)(room=lobby, user=alice, level="nothing")

    frame = await receive_until(alice_directory, lambda f: 'id="sidebar"' in f)
    assert "muted" in tree(frame).find(id=f"sidebar-{lobby.pk}").classes
    assert title_update(frame) == "Rooms · Chat"
    await disconnect(alice_directory)


@live_db
@live
async def test_a_page_showing_a_conversation_moves_the_read_mark_while_it_is_open(alice, bob, monkeypatch):
    monkeypatch.setattr(reading, "READ_MARKS_SECONDS", 0.1)
    alice_lobby = await joined(alice, "lobby")
    lobby = await room_named("lobby")
    bob_lobby = await joined(bob, "lobby")

    await send_message(bob_lobby, "@alice shown while open")
    await receive_until(alice_lobby, lambda f: "shown while open" in f)
    message = await sync_to_async(lambda: lobby.messages.get(body="@alice shown while open"))()

    async with asyncio.timeout(5):
        while await sync_to_async(level_read_id)(alice, lobby) < message.pk:
            await asyncio.sleep(0.05)
    await disconnect(alice_lobby, bob_lobby)


def level_read_id(user: User, room: Room) -> int:
    return Membership.objects.get(user=user, room=room).last_read_id
