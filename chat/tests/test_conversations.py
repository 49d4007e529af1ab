"""Conversations: the sidebar, joining and leaving, direct messages, private rooms, the directory at scale, and the
migration that brought them. What a user sees: pages, status codes, socket frames and close codes."""

from __future__ import annotations

import asyncio
import io
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from accounts.models import User
from chat import services
from chat.models import Membership, Message, Room, direct_room_name
from chat.tests.conftest import (
    ORIGIN,
    drain,
    hears_only_presence,
    joined,
    receive_until,
    send_message,
    session_cookie,
)
from config.asgi import application
from tests.support.html import element_ids

pytestmark = pytest.mark.django_db

# Sockets: a real transaction (the services publish on commit), once on the in-memory and once on the Redis layer.
live = pytest.mark.usefixtures("channel_layer")
live_db = pytest.mark.django_db(transaction=True)


# --- Reading HTML as a browser would ------------------------------------------------------------------------------

VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        """The text a reader sees, whitespace collapsed."""
        parts: list[str] = []

        def collect(node: Node) -> None:
            for child in node.children:
                if isinstance(child, str):
                    parts.append(child)
                elif child.tag not in ("style", "script"):
                    collect(child)

        collect(self)
        return " ".join("".join(parts).split())

    def walk(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def find_all(self, tag: str | None = None, *, id: str | None = None, cls: str | None = None) -> list[Node]:
        return [
            node
            for node in self.walk()
            if (tag is None or node.tag == tag)
            and (id is None or node.attrs.get("id") == id)
            and (cls is None or cls in node.classes)
        ]

    def find(self, tag: str | None = None, *, id: str | None = None, cls: str | None = None) -> Node | None:
        found = self.find_all(tag, id=id, cls=cls)
        return found[0] if found else None


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def tree(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


@dataclass(frozen=True)
class Entry:
    """One sidebar entry as a reader sees it."""

    href: str
    unread: int | None  # the number in its .unread, None when it shows none
    mentioned: bool


def entry_of(li: Node) -> Entry:
    link = li.find("a")
    unread = li.find(cls="unread")
    return Entry(
        href=link.attrs.get("href", "") if link is not None else "",
        unread=int(unread.text) if unread is not None else None,
        mentioned=li.find(cls="mentioned") is not None,
    )


def sidebar_of(html: str) -> tuple[dict[str, Entry], dict[str, Entry]]:
    """The page's sidebar: its rooms by data-room, its people by data-user (each listed once)."""
    navs = tree(html).find_all("nav", id="sidebar")
    assert len(navs) == 1, "the page has no sidebar, or more than one"
    nav = navs[0]
    assert nav.attrs.get("aria-label") == "Conversations"
    lists = {}
    for list_id, key in (("sidebar-rooms", "data-room"), ("sidebar-dms", "data-user")):
        ul = nav.find("ul", id=list_id)
        assert ul is not None, f"no #{list_id} in the sidebar"
        items = [li for li in ul.find_all("li") if key in li.attrs]
        keys = [li.attrs[key] for li in items]
        assert len(keys) == len(set(keys)), f"an entry shows twice in #{list_id}: {keys}"
        lists[list_id] = {li.attrs[key]: entry_of(li) for li in items}
    return lists["sidebar-rooms"], lists["sidebar-dms"]


def badge_update(frame: str, room_id: int) -> tuple[int | None, bool] | None:
    """The count and mention flag a frame swaps into the sidebar entry of a conversation, or None: not such a frame."""
    node = tree(frame).find(id=f"sidebar-badges-{room_id}")
    if node is None or "hx-swap-oob" not in node.attrs:
        return None
    unread = node.find(cls="unread")
    return (int(unread.text) if unread is not None else None, node.find(cls="mentioned") is not None)


def directory_names(html: str) -> list[str]:
    """The room names a directory page lists, in order, as shown ("#name" without the "#")."""
    room_list = tree(html).find("ul", id="room-list")
    assert room_list is not None
    return [row.find("a").text.removeprefix("#") for row in room_list.find_all("li", cls="room-row")]


def log_text(html: str) -> str:
    """The text of a page's or a frame's message log."""
    log = tree(html).find(id="messages")
    assert log is not None
    return log.text


def has_message(text: str):
    return lambda frame: "message-body" in frame and text in tree(frame).text


# --- Clients and sockets -------------------------------------------------------------------------------------------


def logged_in(user: User, *, enforce_csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


def csrf_token(client: Client) -> str:
    """The token a page's forms carry (the directory page: opening it joins nothing)."""
    assert client.get("/chat/").status_code == 200
    return client.cookies["csrftoken"].value


async def socket_to(user: User | None, path: str) -> WebsocketCommunicator:
    headers = [(b"origin", ORIGIN.encode())]
    if user is not None:
        headers.append((b"cookie", (await sync_to_async(session_cookie)(user)).encode()))
    socket = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    return socket


async def joined_dm(user: User, username: str) -> WebsocketCommunicator:
    """The socket of the user's direct-message page with `username`, once it has its log."""
    socket = await socket_to(user, f"/ws/dm/{username}/")
    frame = await receive_until(socket, lambda f: 'id="messages"' in f)
    assert 'id="online-users"' in frame
    return socket


async def open_directory(user: User) -> WebsocketCommunicator:
    """A directory page's socket, once it has its list and sidebar."""
    socket = await socket_to(user, "/ws/directory/")
    frame = await receive_until(socket, lambda f: 'id="room-list"' in f)
    assert 'id="sidebar"' in frame
    return socket


async def close_code(socket: WebsocketCommunicator, timeout: float = 5) -> int | None:
    """The code the server closes the socket with, skipping frames sent before it."""
    async with asyncio.timeout(timeout):
        while True:
            output = await socket.receive_output(timeout)
            if output["type"] == "websocket.close":
                return output.get("code")


async def room_named(name: str) -> Room:
    return await sync_to_async(Room.objects.get)(name__iexact=name)


async def disconnect(*sockets: WebsocketCommunicator) -> None:
    for socket in sockets:
        await socket.disconnect()


def room_joined(user: User, name: str) -> Room:
    room = services.rooms.room_get_or_create(name=name, by=user)
    services.memberships.room_member_join(room=room, user=user)
    return room


def png_bytes() -> bytes:
    data = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(data, format="PNG")
    return data.getvalue()


@pytest.fixture
def media_root(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def secret(alice: User) -> Room:
    """A room alice created and joined, with one message; still public."""
    room = room_joined(alice, "secret")
    services.messages.message_create(room=room, author=alice, body="the plans")
    return room


# --- The sidebar, on the pages -------------------------------------------------------------------------------------


def test_directory_room_and_direct_pages_carry_a_sidebar_of_joined_rooms_and_people_written_with(
    alice, bob, carol, make_user
):
    dave = make_user("Dave")
    for name in ("Lobby", "dev"):
        room_joined(alice, name)
    services.rooms.room_get_or_create(name="not-joined", by=bob)
    for peer in (bob, dave):
        services.messages.message_create(
            room=services.rooms.direct_room_get_or_create(user=peer, peer=alice), author=peer, body="hi"
        )
    services.rooms.direct_room_get_or_create(user=alice, peer=carol)  # a conversation without a message
    client = logged_in(alice)

    for path in ("/chat/", "/chat/dev/", "/dm/bob/", "/dm/DAVE/"):
        response = client.get(path)
        assert response.status_code == 200, path
        rooms, people = sidebar_of(response.content.decode())
        assert {name: entry.href.lower() for name, entry in rooms.items()} == {
            "lobby": "/chat/lobby/#unread-divider",
            "dev": "/chat/dev/#unread-divider",
        }, path
        assert {name: entry.href.lower() for name, entry in people.items()} == {
            "bob": "/dm/bob/#unread-divider",
            "dave": "/dm/dave/#unread-divider",
        }, path


def test_a_sidebar_entry_shows_its_unread_count_and_a_mention_flag_and_no_badge_at_zero(alice, bob):
    lobby, _quiet = room_joined(alice, "lobby"), room_joined(alice, "quiet")
    services.messages.message_create(room=lobby, author=alice, body="my own message")
    services.messages.message_create(room=lobby, author=bob, body="one")
    services.messages.message_create(room=lobby, author=bob, body="two, @alice")
    dm = services.rooms.direct_room_get_or_create(user=bob, peer=alice)
    services.messages.message_create(room=dm, author=bob, body="psst")

    rooms, people = sidebar_of(logged_in(alice).get("/chat/").content.decode())

    assert (rooms["lobby"].unread, rooms["lobby"].mentioned) == (2, True)
    assert (rooms["quiet"].unread, rooms["quiet"].mentioned) == (None, False)
    assert (people["bob"].unread, people["bob"].mentioned) == (1, False)
    # The author's own pages count nothing of what they wrote.
    bob_rooms, bob_people = sidebar_of(logged_in(bob).get("/chat/").content.decode())
    assert bob_people["alice"].unread is None
    assert bob_rooms == {}


def test_the_page_showing_a_conversation_counts_nothing_for_it(alice, bob):
    lobby = room_joined(alice, "lobby")
    services.messages.message_create(room=lobby, author=bob, body="hello @alice")
    dm = services.rooms.direct_room_get_or_create(user=bob, peer=alice)
    services.messages.message_create(room=dm, author=bob, body="psst")
    client = logged_in(alice)

    rooms, people = sidebar_of(client.get("/dm/bob/").content.decode())
    assert (people["bob"].unread, people["bob"].mentioned) == (None, False)
    assert (rooms["lobby"].unread, rooms["lobby"].mentioned) == (1, True)

    rooms, people = sidebar_of(client.get("/chat/lobby/").content.decode())
    assert (rooms["lobby"].unread, rooms["lobby"].mentioned) == (None, False)
    assert people["bob"].unread == 1


# --- The sidebar, live -----------------------------------------------------------------------------------------------


@live_db
@live
async def test_a_message_in_a_joined_room_updates_its_badge_on_the_users_other_pages(alice, bob):
    await disconnect(await joined(alice, "lobby"))  # alice joined the lobby, then closed it
    lobby = await room_named("lobby")
    alice_elsewhere, alice_directory = await joined(alice, "elsewhere"), await open_directory(alice)
    bob_lobby = await joined(bob, "lobby")

    await send_message(bob_lobby, "one")
    for page in (alice_elsewhere, alice_directory):
        frame = await receive_until(page, lambda f: badge_update(f, lobby.pk) is not None)
        assert badge_update(frame, lobby.pk) == (1, False)

    await send_message(bob_lobby, "two, @alice")
    for page in (alice_elsewhere, alice_directory):
        frame = await receive_until(page, lambda f: badge_update(f, lobby.pk) is not None)
        assert badge_update(frame, lobby.pk) == (2, True)
    await disconnect(alice_elsewhere, alice_directory, bob_lobby)


@live_db
@live
async def test_a_message_in_a_direct_conversation_updates_its_badge_on_the_recipients_other_pages(alice, bob):
    dm = await sync_to_async(services.rooms.direct_room_get_or_create)(user=bob, peer=alice)
    await sync_to_async(services.messages.message_create)(room=dm, author=bob, body="first")
    alice_elsewhere = await joined(alice, "elsewhere")
    bob_dm = await joined_dm(bob, "alice")

    await send_message(bob_dm, "second")

    frame = await receive_until(alice_elsewhere, lambda f: badge_update(f, dm.pk) is not None)
    assert badge_update(frame, dm.pk) == (2, False)
    await disconnect(alice_elsewhere, bob_dm)


@live_db
@live
async def test_a_first_direct_message_puts_the_author_in_the_recipients_live_sidebar(alice, bob):
    alice_directory = await open_directory(alice)
    bob_lobby = await joined(bob, "lobby")

    await send_message(bob_lobby, "/pm alice are you there?")

    frame = await receive_until(alice_directory, lambda f: "sidebar-dms" in f)
    entries = [li for li in tree(frame).find_all("li") if li.attrs.get("data-user") == "bob"]
    assert len(entries) == 1
    assert entry_of(entries[0]) == Entry(href="/dm/bob/#unread-divider", unread=1, mentioned=False)
    await disconnect(alice_directory, bob_lobby)


@live_db
@live
async def test_after_a_first_direct_message_the_recipients_open_pages_count_the_next_ones(alice, bob):
    alice_directory = await open_directory(alice)
    bob_lobby = await joined(bob, "lobby")
    await send_message(bob_lobby, "/pm alice are you there?")
    await receive_until(alice_directory, lambda f: "sidebar-dms" in f and 'data-user="bob"' in f)
    dm = await sync_to_async(Room.objects.get)(kind=Room.Kind.DIRECT)

    await send_message(bob_lobby, "/pm alice hello?")

    frame = await receive_until(alice_directory, lambda f: badge_update(f, dm.pk) is not None)
    assert badge_update(frame, dm.pk) == (2, False)
    await disconnect(alice_directory, bob_lobby)


@live_db
@live
async def test_the_page_showing_the_conversation_gets_no_badge_for_it(alice, bob):
    alice_lobby = await joined(alice, "lobby")
    lobby = await room_named("lobby")
    bob_lobby = await joined(bob, "lobby")

    await send_message(bob_lobby, "you are reading this")

    await receive_until(alice_lobby, has_message("you are reading this"))
    assert not any(badge_update(f, lobby.pk) for f in await drain(alice_lobby))
    await disconnect(alice_lobby, bob_lobby)


@live_db
@live
async def test_the_direct_page_showing_the_conversation_gets_no_badge_for_it(alice, bob):
    dm = await sync_to_async(services.rooms.direct_room_get_or_create)(user=bob, peer=alice)
    await sync_to_async(services.messages.message_create)(room=dm, author=bob, body="first")
    alice_dm, bob_dm = await joined_dm(alice, "bob"), await joined_dm(bob, "alice")

    await send_message(bob_dm, "read as it arrives")

    await receive_until(alice_dm, has_message("read as it arrives"))
    frames = await drain(alice_dm)
    assert not any(badge_update(f, dm.pk) for f in frames)
    assert not any("read as it arrives" in f for f in frames), "shown twice"
    await disconnect(alice_dm, bob_dm)


@live_db
@live
async def test_the_authors_own_pages_count_nothing_of_their_message(alice, bob):
    for user in (alice, bob):
        await disconnect(await joined(user, "lobby"))
    lobby = await room_named("lobby")
    alice_elsewhere = await joined(alice, "elsewhere")
    bob_elsewhere, bob_directory = await joined(bob, "elsewhere"), await open_directory(bob)
    bob_lobby = await joined(bob, "lobby")

    await send_message(bob_lobby, "my own news")

    await receive_until(alice_elsewhere, lambda f: badge_update(f, lobby.pk) == (1, False))
    for page in (bob_elsewhere, bob_directory):
        assert not any(badge_update(f, lobby.pk) for f in await drain(page))

    # Also when the page bob wrote it from is not one of this server process's (here: no page of the room at all).
    await disconnect(bob_lobby)
    await sync_to_async(services.messages.message_post)(room=lobby, author=bob, text="written elsewhere")

    await receive_until(alice_elsewhere, lambda f: badge_update(f, lobby.pk) == (2, False))
    for page in (bob_elsewhere, bob_directory):
        assert not any(badge_update(f, lobby.pk) for f in await drain(page))
    await disconnect(alice_elsewhere, bob_elsewhere, bob_directory)


@live_db
@live
async def test_only_members_pages_hear_of_a_message(alice, bob, carol):
    await disconnect(await joined(alice, "lobby"))
    lobby = await room_named("lobby")
    alice_elsewhere = await joined(alice, "elsewhere")
    carol_elsewhere, carol_directory = await joined(carol, "elsewhere"), await open_directory(carol)
    bob_lobby = await joined(bob, "lobby")

    await send_message(bob_lobby, "members only news")

    await receive_until(alice_elsewhere, lambda f: badge_update(f, lobby.pk) == (1, False))
    for page in (carol_elsewhere, carol_directory):
        frames = await drain(page)
        assert not any(f"sidebar-badges-{lobby.pk}" in f or f'id="sidebar-{lobby.pk}"' in f for f in frames)
    await disconnect(alice_elsewhere, carol_elsewhere, carol_directory, bob_lobby)


# --- Joining and leaving ---------------------------------------------------------------------------------------------


def test_opening_a_room_page_joins_it_and_the_directory_joins_nothing(alice, bob):
    services.rooms.room_get_or_create(name="Lobby", by=bob)
    client = logged_in(alice)
    assert client.get("/chat/").status_code == 200
    assert not Membership.objects.filter(user=alice).exists()

    assert client.get("/chat/LOBBY/").status_code == 200

    assert Membership.objects.filter(user=alice, room__name="Lobby").count() == 1
    rooms, _ = sidebar_of(client.get("/chat/").content.decode())
    assert list(rooms) == ["lobby"]


@live_db
@live
async def test_opening_a_room_socket_joins_it_and_the_users_other_pages_show_it_at_once(alice):
    alice_directory = await open_directory(alice)

    alice_lobby = await socket_to(alice, "/ws/chat/Lobby/")
    snapshot = await receive_until(alice_lobby, lambda f: 'id="messages"' in f)

    lobby = await room_named("lobby")
    assert await sync_to_async(Membership.objects.filter(user=alice, room=lobby).exists)()
    rooms, _ = sidebar_of(snapshot)
    assert "lobby" in rooms
    added = await receive_until(alice_directory, lambda f: "sidebar-rooms" in f)
    entries = [li for li in tree(added).find_all("li") if li.attrs.get("data-room") == "lobby"]
    assert [entry_of(li).href.lower() for li in entries] == ["/chat/lobby/#unread-divider"]
    await disconnect(alice_directory, alice_lobby)


@live_db
@live
async def test_a_room_joined_by_its_socket_is_then_counted_on_the_users_pages_opened_before(alice, bob):
    alice_directory = await open_directory(alice)
    await disconnect(await joined(alice, "lobby"))  # joined, then closed
    lobby = await room_named("lobby")
    await receive_until(alice_directory, lambda f: "sidebar-rooms" in f and 'data-room="lobby"' in f)
    bob_lobby = await joined(bob, "lobby")

    await send_message(bob_lobby, "news for alice")

    frame = await receive_until(alice_directory, lambda f: badge_update(f, lobby.pk) is not None)
    assert badge_update(frame, lobby.pk) == (1, False)
    await disconnect(alice_directory, bob_lobby)


@live_db
@live
async def test_opening_a_room_page_joins_it_live_the_users_open_pages_then_count_its_messages(alice, bob):
    alice_directory = await open_directory(alice)
    client = await sync_to_async(logged_in)(alice)

    assert (await sync_to_async(client.get)("/chat/lobby/")).status_code == 200

    lobby = await room_named("lobby")
    await receive_until(alice_directory, lambda f: "sidebar-rooms" in f and 'data-room="lobby"' in f)
    bob_lobby = await joined(bob, "lobby")
    await send_message(bob_lobby, "news for alice")
    frame = await receive_until(alice_directory, lambda f: badge_update(f, lobby.pk) is not None)
    assert badge_update(frame, lobby.pk) == (1, False)
    await disconnect(alice_directory, bob_lobby)


def test_leaving_a_room_needs_csrf_takes_it_off_the_sidebar_and_keeps_it_in_the_directory(alice):
    client = logged_in(alice, enforce_csrf=True)
    assert client.get("/chat/lobby/").status_code == 200

    assert client.post("/chat/lobby/leave/").status_code == 403
    assert Membership.objects.filter(user=alice).exists()
    assert client.get("/chat/lobby/leave/").status_code == 405

    response = client.post("/chat/lobby/leave/", {"csrfmiddlewaretoken": csrf_token(client)})

    assert response.status_code == 302
    assert not Membership.objects.filter(user=alice).exists()
    html = client.get(response.url).content.decode()
    rooms, _ = sidebar_of(html)
    assert "lobby" not in rooms
    assert "lobby" in directory_names(html)


@live_db
@live
async def test_leaving_removes_the_entry_live_from_the_users_other_pages_which_hear_of_it_no_more(alice, bob):
    await disconnect(await joined(alice, "lobby"))
    lobby = await room_named("lobby")
    alice_directory = await open_directory(alice)
    client = await sync_to_async(logged_in)(alice, enforce_csrf=True)
    token = await sync_to_async(csrf_token)(client)

    response = await sync_to_async(client.post)("/chat/lobby/leave/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302

    await receive_until(alice_directory, lambda f: f'<li id="sidebar-{lobby.pk}" hx-swap-oob="delete">' in f)
    bob_lobby = await joined(bob, "lobby")
    await send_message(bob_lobby, "after alice left")
    await receive_until(bob_lobby, has_message("after alice left"))
    assert not any(f"sidebar-badges-{lobby.pk}" in f for f in await drain(alice_directory))
    await disconnect(alice_directory, bob_lobby)


@live_db
@live
async def test_leaving_in_one_tab_removes_the_entry_from_another_tab_showing_the_same_room(alice):
    tab_1, tab_2 = await joined(alice, "lobby"), await joined(alice, "lobby")
    lobby = await room_named("lobby")
    client = await sync_to_async(logged_in)(alice, enforce_csrf=True)
    token = await sync_to_async(csrf_token)(client)

    # Tab 1's Leave button; tab 2 stays open on the room.
    response = await sync_to_async(client.post)("/chat/lobby/leave/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302

    frames = await drain(tab_2, quiet=1)
    assert any(f'<li id="sidebar-{lobby.pk}" hx-swap-oob="delete">' in f for f in frames), frames
    await disconnect(tab_1, tab_2)


# --- Direct messages -------------------------------------------------------------------------------------------------


def test_a_direct_page_needs_a_login(client: Client, bob):
    response = client.get("/dm/bob/")
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/?next=")


def test_a_direct_page_has_the_room_pages_elements_in_any_casing_of_the_name(alice, bob):
    client = logged_in(alice)
    numbered = re.compile(r".*-\d+")
    room_ids = {i for i in element_ids(client.get("/chat/lobby/").content.decode()) if not numbered.fullmatch(i)}
    assert {"messages", "online-users", "message-form", "chat-error", "sidebar", "upload-form"} <= room_ids
    for path in ("/dm/bob/", "/dm/BOB/", "/dm/Bob/"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert room_ids <= set(element_ids(html)), (path, room_ids - set(element_ids(html)))
        assert 'ws-connect="/ws/dm/bob/"' in html
        assert tree(html).find("h1", id="room-title").text == "@bob"
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1


@pytest.mark.parametrize("username", ["ghost", "alice", "ALICE"])
def test_a_direct_page_with_an_unknown_user_or_oneself_is_404(alice, username):
    assert logged_in(alice).get(f"/dm/{username}/").status_code == 404
    assert not Room.objects.filter(kind=Room.Kind.DIRECT).exists()


def test_a_third_user_cannot_read_a_direct_conversation_by_any_url(alice, bob, carol):
    dm = services.rooms.direct_room_get_or_create(user=alice, peer=bob)
    message = services.messages.message_create(room=dm, author=alice, body="between us two")
    carol_client = logged_in(carol)

    for path in (
        "/dm/bob/",
        "/dm/alice/",
        "/dm/bob/search/?q=between",
        "/dm/alice/search/?q=between",
        f"/dm/bob/history/?before={message.pk + 1}",
        f"/chat/{dm.name}/",
        f"/chat/{dm.name}/search/?q=between",
    ):
        response = carol_client.get(path)
        assert "between us two" not in response.content.decode(), path
    for path in (f"/dm/bob/messages/{message.pk}/", f"/dm/alice/messages/{message.pk}/"):
        assert carol_client.get(path).status_code == 404, path
    # /dm/bob/ is carol's own conversation with bob, not alice's.
    assert tree(carol_client.get("/dm/bob/").content.decode()).find(id="messages").find_all("article") == []
    assert "between us two" in log_text(logged_in(bob).get("/dm/alice/").content.decode())


@live_db
@live
async def test_a_direct_socket_carries_the_log_the_online_list_the_sidebar_and_live_messages(alice, bob):
    alice_dm = await socket_to(alice, "/ws/dm/Bob/")
    snapshot = await receive_until(alice_dm, lambda f: 'id="messages"' in f)
    for element_id in ("messages", "online-users", "sidebar"):
        assert tree(snapshot).find(id=element_id) is not None, element_id
    bob_dm = await joined_dm(bob, "alice")

    await send_message(alice_dm, "hello bob")

    frame = await receive_until(bob_dm, has_message("hello bob"))
    assert 'hx-swap-oob="beforeend:#messages"' in frame
    assert "message--private" not in frame  # in the conversation itself it is no whisper
    form = await receive_until(alice_dm, lambda f: 'id="message-form"' in f)
    assert 'value=""' in form
    await alice_dm.send_to(text_data=json.dumps({"typing": True, "HEADERS": {"HX-Trigger": None}}))
    notice = await receive_until(bob_dm, lambda f: "is typing" in f)
    assert tree(notice).text == "alice is typing…"
    message = await sync_to_async(Message.objects.select_related("room", "recipient").get)(body="hello bob")
    assert message.room.kind == Room.Kind.DIRECT
    assert message.recipient == bob
    await disconnect(alice_dm, bob_dm)


@live_db
@live
async def test_a_direct_page_shows_its_own_conversation_only_never_another_ones_whisper(alice, bob, carol):
    alice_with_bob = await joined_dm(alice, "bob")
    carol_lobby = await joined(carol)

    await send_message(carol_lobby, "/pm alice only for alice and carol")
    await receive_until(carol_lobby, has_message("only for alice and carol"))

    frames = await drain(alice_with_bob)
    assert not [frame for frame in frames if "only for alice and carol" in tree(frame).text]
    # Its sidebar counts it instead.
    assert any('data-user="carol"' in frame for frame in frames)
    await disconnect(alice_with_bob, carol_lobby)


@live_db
@live
@pytest.mark.parametrize("username", ["ghost", "alice", "ALICE"])
async def test_a_direct_socket_with_an_unknown_user_or_oneself_closes_with_4003(alice, username):
    socket = await socket_to(alice, f"/ws/dm/{username}/")
    assert await close_code(socket) == 4003
    assert not await sync_to_async(Room.objects.filter(kind=Room.Kind.DIRECT).exists)()


@live_db
@live
async def test_a_third_users_direct_socket_is_their_own_conversation_and_hears_nothing_of_others(alice, bob, carol):
    dm = await sync_to_async(services.rooms.direct_room_get_or_create)(user=alice, peer=bob)
    await sync_to_async(services.messages.message_create)(room=dm, author=alice, body="stored before")
    alice_dm, bob_dm = await joined_dm(alice, "bob"), await joined_dm(bob, "alice")

    carol_socket = await socket_to(carol, "/ws/dm/bob/")
    log = await receive_until(carol_socket, lambda f: 'id="messages"' in f)
    assert "stored before" not in log
    await send_message(alice_dm, "sent live")

    await receive_until(bob_dm, has_message("sent live"))
    assert await hears_only_presence(carol_socket)
    await disconnect(alice_dm, bob_dm, carol_socket)


@live_db
@live
async def test_pm_in_a_room_lands_in_the_direct_conversation_and_whispers_to_both_room_pages(alice, bob, carol):
    alice_lobby = await joined(alice, "lobby")
    bob_elsewhere, bob_dm = await joined(bob, "elsewhere"), await joined_dm(bob, "alice")
    carol_lobby = await joined(carol, "lobby")

    await send_message(alice_lobby, "/pm bob see you at noon")

    for page in (alice_lobby, bob_elsewhere):
        frame = await receive_until(page, has_message("see you at noon"))
        articles = [a for a in tree(frame).find_all("article") if "see you at noon" in a.text]
        assert len(articles) == 1
        assert "message--private" in articles[0].classes
        assert "private to bob" in articles[0].text
    await receive_until(bob_dm, has_message("see you at noon"))
    assert not any("see you at noon" in f for f in await drain(bob_dm)), "shown twice on the direct page"
    assert not any("noon" in f for f in await drain(carol_lobby))

    message = await sync_to_async(Message.objects.select_related("room").get)(body="see you at noon")
    assert message.room.kind == Room.Kind.DIRECT
    assert message.room.name == direct_room_name(alice.pk, bob.pk)
    members = await sync_to_async(lambda: {m.user_id for m in Membership.objects.filter(room=message.room)})()
    assert members == {alice.pk, bob.pk}

    def page_log(user: User, path: str) -> str:
        return log_text(logged_in(user).get(path).content.decode())

    assert "see you at noon" in await sync_to_async(page_log)(alice, "/dm/bob/")
    assert "see you at noon" in await sync_to_async(page_log)(bob, "/dm/alice/")
    assert "see you at noon" not in await sync_to_async(page_log)(carol, "/dm/bob/")
    await disconnect(alice_lobby, bob_elsewhere, bob_dm, carol_lobby)


# --- Private rooms -------------------------------------------------------------------------------------------------


def test_the_creator_makes_a_room_private_on_its_settings_page(alice, bob, secret):
    client = logged_in(alice, enforce_csrf=True)
    page = client.get("/chat/secret/settings/")
    assert page.status_code == 200
    assert tree(page.content.decode()).find("form", id="privacy-form") is not None

    response = client.post("/chat/secret/settings/", {"private": "on", "csrfmiddlewaretoken": csrf_token(client)})

    assert response.status_code == 302
    secret.refresh_from_db()
    assert secret.kind == Room.Kind.PRIVATE
    html = client.get("/chat/secret/settings/").content.decode()
    checkbox = [i for i in tree(html).find_all("input") if i.attrs.get("name") == "private"]
    assert "checked" in checkbox[0].attrs
    assert "alice" in tree(html).find(id="room-members").text
    assert logged_in(bob).get("/chat/secret/").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/chat/secret/"),
        ("get", "/chat/SECRET/"),
        ("get", "/chat/secret/history/?before={message}"),
        ("get", "/chat/secret/search/?q=plans"),
        ("get", "/chat/secret/messages/{message}/"),
        ("post", "/chat/secret/attachments/"),
        ("get", "/chat/secret/settings/"),
        ("post", "/chat/secret/settings/"),
        ("post", "/chat/secret/members/"),
        ("get", "/chat/secret/private-to/?to=alice"),
        ("post", "/chat/secret/leave/"),
    ],
)
def test_every_url_of_a_private_room_is_404_to_a_non_member(alice, bob, secret, media_root, method, path):
    message = Message.objects.get(room=secret)
    services.memberships.room_privacy_set(room=secret, private=True, by=alice)
    client = logged_in(bob)
    data = {}
    if path.endswith("/attachments/"):
        data = {"file": SimpleUploadedFile("x.png", png_bytes()), "caption": "sneaky"}
    elif path.endswith("/settings/"):
        data = {"private": ""}
    elif path.endswith("/members/"):
        data = {"username": "bob"}

    response = getattr(client, method)(path.format(message=message.pk + 1 if "before" in path else message.pk), data)

    assert response.status_code == 404
    assert "the plans" not in response.content.decode()
    secret.refresh_from_db()
    assert secret.kind == Room.Kind.PRIVATE
    assert not Membership.objects.filter(room=secret, user=bob).exists()
    assert Message.objects.filter(room=secret).count() == 1


def test_a_private_room_is_in_neither_the_directory_nor_its_search_for_a_non_member(alice, bob, secret):
    services.rooms.room_get_or_create(name="Secretariat", by=alice)
    services.memberships.room_privacy_set(room=secret, private=True, by=alice)
    client = logged_in(bob)

    for query in ({}, {"q": "secret"}, {"q": "SECR"}):
        html = client.get("/chat/", query).content.decode()
        assert directory_names(html) == ["Secretariat"], query
    assert "Public rooms whose name contains “secret”: 1." in tree(client.get("/chat/?q=secret").content.decode()).text


def test_the_creator_adds_a_member_by_username_who_can_then_read_the_room(alice, bob, secret):
    services.memberships.room_privacy_set(room=secret, private=True, by=alice)
    client = logged_in(alice, enforce_csrf=True)

    response = client.post("/chat/secret/members/", {"username": "BOB", "csrfmiddlewaretoken": csrf_token(client)})

    assert response.status_code == 302
    members = tree(client.get(response.url).content.decode()).find(id="room-members")
    assert [li.text.split()[0] for li in members.find_all("li")] == ["alice", "bob"]
    bob_page = logged_in(bob).get("/chat/secret/")
    assert bob_page.status_code == 200
    assert "the plans" in log_text(bob_page.content.decode())
    rooms, _ = sidebar_of(logged_in(bob).get("/chat/").content.decode())
    assert "secret" in rooms


def test_the_creator_takes_a_member_out_who_then_cannot_read_the_private_room(alice, bob, carol, secret):
    services.memberships.room_privacy_set(room=secret, private=True, by=alice)
    services.memberships.room_member_add(room=secret, username="bob", by=alice)
    client = logged_in(alice, enforce_csrf=True)

    response = client.post(
        "/chat/secret/members/remove/", {"username": "bob", "csrfmiddlewaretoken": csrf_token(client)}
    )

    assert response.status_code == 302
    members = tree(client.get(response.url).content.decode()).find(id="room-members")
    assert [li.text.split()[0] for li in members.find_all("li")] == ["alice"]
    assert logged_in(bob).get("/chat/secret/").status_code == 404
    # Only the creator (or staff) may, and never the creator themselves.
    services.memberships.room_member_add(room=secret, username="carol", by=alice)
    assert logged_in(carol).post("/chat/secret/members/remove/", {"username": "alice"}).status_code == 403
    refused = logged_in(alice).post("/chat/secret/members/remove/", {"username": "alice"})
    assert refused.status_code == 400
    assert "only they can leave it" in tree(refused.content.decode()).find(id="settings-error").text
    assert Membership.objects.filter(room=secret, user=alice).exists()


def test_adding_an_unknown_user_is_a_clear_400(alice, secret):
    services.memberships.room_privacy_set(room=secret, private=True, by=alice)

    response = logged_in(alice).post("/chat/secret/members/", {"username": "ghost"})

    assert response.status_code == 400
    error = tree(response.content.decode()).find(id="settings-error")
    assert error is not None
    assert error.text == "There is no user called ghost."
    assert error.attrs.get("role") == "alert"
    assert list(Membership.objects.filter(room=secret).values_list("user__username", flat=True)) == ["alice"]


def test_a_member_who_did_not_create_the_room_gets_403_changing_its_settings(alice, bob, carol, secret):
    services.memberships.room_privacy_set(room=secret, private=True, by=alice)
    services.memberships.room_member_add(room=secret, username="bob", by=alice)
    client = logged_in(bob)

    response = client.post("/chat/secret/settings/", {"private": ""})

    assert response.status_code == 403
    assert "Only the person who created #secret" in tree(response.content.decode()).find(id="settings-error").text
    secret.refresh_from_db()
    assert secret.kind == Room.Kind.PRIVATE
    assert client.post("/chat/secret/members/", {"username": "carol"}).status_code == 403
    assert not Membership.objects.filter(room=secret, user=carol).exists()
    assert logged_in(carol).get("/chat/secret/").status_code == 404


def test_staff_can_make_a_room_they_did_not_create_private(alice, carol, secret):
    carol.is_staff = True
    carol.save()

    response = logged_in(carol).post("/chat/secret/settings/", {"private": "on"})

    assert response.status_code == 302
    secret.refresh_from_db()
    assert secret.kind == Room.Kind.PRIVATE


def test_reactions_edits_deletions_and_files_of_a_private_rooms_messages_are_404_to_non_members(
    alice, bob, secret, media_root
):
    message = services.attachments.attachment_create(
        room=secret, author=alice, upload=SimpleUploadedFile("map.png", png_bytes()), caption="the map"
    )
    attachment = message.attachment
    services.memberships.room_privacy_set(room=secret, private=True, by=alice)
    client = logged_in(bob)

    for method, path, data in (
        ("post", f"/chat/messages/{message.pk}/reactions/", {"emoji": "\N{THUMBS UP SIGN}"}),
        ("get", f"/chat/messages/{message.pk}/edit/", {}),
        ("post", f"/chat/messages/{message.pk}/edit/", {"body": "defaced"}),
        ("post", f"/chat/messages/{message.pk}/delete/", {}),
        ("get", f"/chat/files/{attachment.pk}/", {}),
        ("get", f"/chat/files/{attachment.pk}/thumbnail/", {}),
    ):
        response = getattr(client, method)(path, data)
        assert response.status_code == 404, (method, path, response.status_code)

    message.refresh_from_db()
    assert (message.body, message.retracted_at, message.reactions_summary) == ("the map", None, {})
    assert logged_in(alice).get(f"/chat/files/{attachment.pk}/").status_code == 200


@live_db
@live
async def test_a_non_members_socket_to_a_private_room_closes_with_4003(alice, bob, secret):
    await sync_to_async(services.memberships.room_privacy_set)(room=secret, private=True, by=alice)

    socket = await socket_to(bob, "/ws/chat/SECRET/")

    frames = []
    while (output := await socket.receive_output(5))["type"] == "websocket.send":
        frames.append(output["text"])
    assert output["type"] == "websocket.close"
    assert output.get("code") == 4003
    assert not any("the plans" in frame for frame in frames)
    assert not await sync_to_async(Membership.objects.filter(room=secret, user=bob).exists)()


@live_db
@live
async def test_making_a_room_private_closes_the_open_socket_of_a_non_member_with_4003(alice, bob, carol, secret):
    alice_socket, bob_socket, carol_socket = [await joined(user, "secret") for user in (alice, bob, carol)]
    # Carol leaves the room but keeps its page open: she is no member any more (bob, who opened it, is one).
    await sync_to_async(services.memberships.room_leave)(room=secret, user=carol)

    await sync_to_async(services.memberships.room_privacy_set)(room=secret, private=True, by=alice)

    assert await close_code(carol_socket) == 4003
    await send_message(alice_socket, "members only now")
    await receive_until(bob_socket, has_message("members only now"))
    await disconnect(alice_socket, bob_socket)


@live_db
@live
async def test_a_member_leaving_a_private_room_has_its_open_socket_closed_with_4003(alice, bob, secret):
    await sync_to_async(services.memberships.room_privacy_set)(room=secret, private=True, by=alice)
    await sync_to_async(services.memberships.room_member_add)(room=secret, username="bob", by=alice)
    bob_socket = await joined(bob, "secret")

    await sync_to_async(services.memberships.room_leave)(room=secret, user=bob)

    assert await close_code(bob_socket) == 4003
    assert await sync_to_async(lambda: logged_in(bob).get("/chat/secret/").status_code)() == 404


@live_db
@live
async def test_making_a_room_private_takes_it_off_the_open_directories_of_non_members(alice, carol, secret):
    carol_directory = await open_directory(carol)

    await sync_to_async(services.memberships.room_privacy_set)(room=secret, private=True, by=alice)

    await receive_until(carol_directory, lambda f: '<li id="room-secret" hx-swap-oob="delete">' in f)
    await disconnect(carol_directory)
    carol_directory = await socket_to(carol, "/ws/directory/?q=secr")
    listing = await receive_until(carol_directory, lambda f: 'id="room-list"' in f)
    assert directory_names(listing) == []
    await disconnect(carol_directory)


@live_db
@live
async def test_a_message_in_a_private_room_reaches_no_non_members_sidebar(alice, bob, carol, secret):
    await sync_to_async(services.memberships.room_privacy_set)(room=secret, private=True, by=alice)
    await sync_to_async(services.memberships.room_member_add)(room=secret, username="bob", by=alice)
    bob_directory, carol_directory = await open_directory(bob), await open_directory(carol)
    alice_socket = await joined(alice, "secret")

    await send_message(alice_socket, "for members")

    await receive_until(bob_directory, lambda f: badge_update(f, secret.pk) is not None)
    frames = await drain(carol_directory)
    assert not any(f"sidebar-badges-{secret.pk}" in f or "for members" in f or 'id="room-secret"' in f for f in frames)
    await disconnect(bob_directory, carol_directory, alice_socket)


# --- The directory at scale ----------------------------------------------------------------------------------------


def test_the_directory_lists_public_rooms_50_a_page_most_recent_activity_first(alice):
    now = timezone.now()
    Room.objects.bulk_create(
        Room(name=f"room-{i:03d}", last_message_at=now - timedelta(minutes=i)) for i in range(120)
    )
    Room.objects.bulk_create(
        [
            Room(name="hidden", kind=Room.Kind.PRIVATE, last_message_at=now),
            Room(name=direct_room_name(1, 2), kind=Room.Kind.DIRECT, last_message_at=now),
        ]
    )
    client = logged_in(alice)

    pages = {page: client.get("/chat/", {"page": page}).content.decode() for page in (1, 2, 3)}

    assert directory_names(pages[1]) == [f"room-{i:03d}" for i in range(50)]
    assert directory_names(pages[2]) == [f"room-{i:03d}" for i in range(50, 100)]
    assert directory_names(pages[3]) == [f"room-{i:03d}" for i in range(100, 120)]
    assert "Page 2 of 3" in tree(pages[2]).text
    links = {a.attrs.get("rel"): a.attrs["href"] for a in tree(pages[2]).find_all("a") if a.attrs.get("rel")}
    assert links == {"prev": "?page=1", "next": "?page=3"}


def test_the_directory_filters_by_a_case_insensitive_part_of_the_name(alice):
    for name in ("Alpha-Team", "alphabet", "beta", "xALPHAx"):
        services.rooms.room_get_or_create(name=name)

    html = logged_in(alice).get("/chat/", {"q": "ALPHA"}).content.decode()

    assert sorted(directory_names(html)) == ["Alpha-Team", "alphabet", "xALPHAx"]


def test_the_directory_answers_with_as_many_queries_for_10000_rooms_as_for_10(alice, bob):
    now = timezone.now()
    rooms = Room.objects.bulk_create(Room(name=f"base-{i}", last_message_at=now) for i in range(10))
    # Alice joined four rooms; two have messages since (one mentions her); she talks to bob.
    for room in rooms[:4]:
        services.memberships.room_member_join(room=room, user=alice)
    for room, body in ((rooms[0], "one"), (rooms[0], "two, @alice"), (rooms[1], "three"), (rooms[5], "four")):
        services.messages.message_create(room=room, author=bob, body=body)
    services.messages.message_create(
        room=services.rooms.direct_room_get_or_create(user=bob, peer=alice), author=bob, body="hi"
    )
    client = logged_in(alice)
    client.get("/chat/")  # the session, the content types: whatever a first request loads once

    def measured(path: str) -> tuple[int, str, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)
        assert response.status_code == 200
        return len(queries), response.content.decode(), [q["sql"] for q in queries]

    # Both list every room alice joined, at either size: the unread counting runs the same way.
    small = {path: measured(path) for path in ("/chat/", "/chat/?q=-")}
    Room.objects.bulk_create(
        (Room(name=f"bulk-{i:05d}", last_message_at=now - timedelta(days=1, seconds=i)) for i in range(9990)),
        batch_size=1000,
    )
    assert Room.objects.filter(kind=Room.Kind.PUBLIC).count() == 10_000
    large = {path: measured(path) for path in small}

    for path in small:
        assert large[path][0] == small[path][0], (path, small[path][2], large[path][2])
    assert len(directory_names(small["/chat/"][1])) == 10
    assert len(directory_names(large["/chat/"][1])) == 50
    assert len(directory_names(large["/chat/?q=-"][1])) == 50
    assert "Page 1 of 200" in tree(large["/chat/"][1]).text
    for _count, html, _sql in (small["/chat/"], large["/chat/"]):
        listing = tree(html)
        unread = listing.find(id=f"unread-{rooms[0].pk}")
        assert unread is not None
        assert "counter-reset: unread 2" in unread.attrs["style"]
        assert listing.find(id=f"mentioned-{rooms[0].pk}").text == "you were mentioned"
        sidebar_rooms, people = sidebar_of(html)
        assert sidebar_rooms["base-0"] == Entry(href="/chat/base-0/#unread-divider", unread=2, mentioned=True)
        assert sidebar_rooms["base-1"].unread == 1
        assert people["bob"].unread == 1


# --- The migration -------------------------------------------------------------------------------------------------

BEFORE_CONVERSATIONS = [("chat", "0009_presence_leaves_the_database")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_private_messages_into_direct_conversations_and_visits_become_memberships():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_CONVERSATIONS)
    apps = executor.loader.project_state(BEFORE_CONVERSATIONS).apps
    OldUser, OldRoom, OldMessage, OldVisit = (
        apps.get_model(*name)
        for name in (("accounts", "User"), ("chat", "Room"), ("chat", "Message"), ("chat", "RoomVisit"))
    )
    alice, bob, carol, dave = (OldUser.objects.create(username=name) for name in ("alice", "bob", "carol", "dave"))
    lobby, other = OldRoom.objects.create(name="lobby"), OldRoom.objects.create(name="Other")
    public = OldMessage.objects.create(room=lobby, author=alice, body="hello all")
    to_bob = OldMessage.objects.create(room=lobby, author=alice, recipient=bob, body="psst bob")
    to_alice = OldMessage.objects.create(room=other, author=bob, recipient=alice, body="psst alice")
    to_carol = OldMessage.objects.create(room=lobby, author=alice, recipient=carol, body="psst carol")
    OldVisit.objects.create(user=carol, room=lobby, last_read_id=public.pk)
    OldVisit.objects.create(user=dave, room=other, last_read_id=0)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert dict(Room.objects.filter(name__in=["lobby", "Other"]).values_list("name", "kind")) == {
        "lobby": Room.Kind.PUBLIC,
        "Other": Room.Kind.PUBLIC,
    }
    alice_bob = Room.objects.get(name=direct_room_name(alice.pk, bob.pk))
    alice_carol = Room.objects.get(name=direct_room_name(alice.pk, carol.pk))
    assert (alice_bob.kind, alice_carol.kind) == (Room.Kind.DIRECT, Room.Kind.DIRECT)
    assert set(Message.objects.filter(room=alice_bob).values_list("pk", flat=True)) == {to_bob.pk, to_alice.pk}
    assert set(Message.objects.filter(room=alice_carol).values_list("pk", flat=True)) == {to_carol.pk}
    assert list(Message.objects.filter(room__name="lobby").values_list("pk", flat=True)) == [public.pk]
    assert set(Membership.objects.filter(room=alice_bob).values_list("user_id", flat=True)) == {alice.pk, bob.pk}
    # Every room page showed them until now: the conversations start read, not as a pile of unread messages.
    latest = max(to_bob.pk, to_alice.pk)
    assert set(Membership.objects.filter(room=alice_bob).values_list("last_read_id", flat=True)) == {latest}
    visit = Membership.objects.get(user_id=carol.pk, room=lobby.pk)
    assert visit.last_read_id == public.pk
    assert Membership.objects.filter(user_id=dave.pk, room=other.pk).exists()

    # What the people see: the direct pages of both, the visited rooms in the sidebar, the rooms in the directory.
    users = {user.username: user for user in User.objects.all()}
    for user, peer, texts in (
        ("alice", "bob", ["psst bob", "psst alice"]),
        ("bob", "alice", ["psst bob", "psst alice"]),
    ):
        log = log_text(logged_in(users[user]).get(f"/dm/{peer}/").content.decode())
        assert all(text in log for text in texts), (user, log)
        assert "psst carol" not in log
    assert "psst carol" in log_text(logged_in(users["carol"]).get("/dm/alice/").content.decode())
    assert "psst" not in log_text(logged_in(users["dave"]).get("/chat/lobby/").content.decode())
    carol_html = logged_in(users["carol"]).get("/chat/").content.decode()
    assert "lobby" in sidebar_of(carol_html)[0]
    assert sorted(directory_names(carol_html)) == ["Other", "lobby"]
    assert "other" in sidebar_of(logged_in(users["dave"]).get("/chat/").content.decode())[0]
