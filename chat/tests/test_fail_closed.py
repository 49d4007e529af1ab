"""Sockets fail closed: once a socket's session ends or its user loses the right to read its conversation, nothing
it sends is stored or delivered, even when the notice never arrived, and it is closed within the recheck period."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from accounts.models import User
from chat import broadcasts, services
from chat.models import Membership, Message, Room
from chat.tests.conftest import drain, joined, receive_until, send_message
from chat.tests.test_sessions import close_code, directory_socket, logout, not_closed, room_socket, session
from tests.support.html import visible_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def layer_unreachable_for_publishing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every publish of the services fails, and keeps failing: no notice of what happens ever goes out."""

    def layer_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the layer is down")

    monkeypatch.setattr(broadcasts, "get_channel_layer", layer_down)


@pytest.fixture
def secret(alice: User) -> Room:
    room = services.rooms.room_get_or_create(name="secret", by=alice)
    return services.memberships.room_privacy_set(room=room, private=True, by=alice)


async def stored(text: str) -> bool:
    return await sync_to_async(Message.objects.filter(body=text).exists)()


@pytest.mark.usefixtures("layer_unreachable_for_publishing")
async def test_a_socket_whose_logout_was_never_told_stores_nothing_and_closes_with_4001(alice, bob):
    browser = await session(alice)
    tab = await room_socket(browser)
    await logout(browser)
    await not_closed(tab)

    await send_message(tab, "posted after the logout")

    assert await close_code(tab) == 4001
    assert not await stored("posted after the logout")


@pytest.mark.usefixtures("layer_unreachable_for_publishing")
async def test_a_socket_whose_logout_was_never_told_is_closed_by_the_recheck(alice, settings):
    settings.CHAT_SOCKET_RECHECK_SECONDS = 0.5
    browser = await session(alice)
    tab = await room_socket(browser)

    await logout(browser)

    assert await close_code(tab, within=settings.CHAT_SOCKET_RECHECK_SECONDS + 1) == 4001


async def test_a_password_changed_elsewhere_closes_the_old_sessions_socket_at_the_recheck(alice, settings):
    """Django logs the old session out at its next request; its socket goes at the next recheck at the latest."""
    settings.CHAT_SOCKET_RECHECK_SECONDS = 0.5
    browser = await session(alice)
    tab = await room_socket(browser)

    def password_set() -> None:  # straight in the database: no signal, no notice published
        user = User.objects.get(pk=alice.pk)
        user.set_password("an-entirely-new-passphrase-7")
        User.objects.filter(pk=alice.pk).update(password=user.password)

    await database_sync_to_async(password_set)()

    assert await close_code(tab, within=settings.CHAT_SOCKET_RECHECK_SECONDS + 1) == 4001


@pytest.mark.usefixtures("layer_unreachable_for_publishing")
async def test_a_member_taken_out_whose_notice_was_never_told_stores_nothing_and_closes_with_4003(alice, bob, secret):
    await sync_to_async(services.memberships.room_member_add)(room=secret, username="bob", by=alice)
    bob_socket = await joined(bob, "secret")
    await sync_to_async(services.memberships.room_member_remove)(room=secret, username="bob", by=alice)
    await not_closed(bob_socket)

    await send_message(bob_socket, "still here?")

    frames = [frame async for frame in frames_until_closed(bob_socket)]
    assert "closed to you" in visible_text("".join(frames))
    assert not await stored("still here?")
    assert not await sync_to_async(Membership.objects.filter(room=secret, user=bob).exists)()


@pytest.mark.usefixtures("layer_unreachable_for_publishing")
async def test_a_member_taken_out_is_closed_by_the_recheck_though_no_notice_arrived(alice, bob, secret, settings):
    settings.CHAT_SOCKET_RECHECK_SECONDS = 0.5
    await sync_to_async(services.memberships.room_member_add)(room=secret, username="bob", by=alice)
    bob_socket = await joined(bob, "secret")

    await sync_to_async(services.memberships.room_member_remove)(room=secret, username="bob", by=alice)

    assert await close_code(bob_socket, within=settings.CHAT_SOCKET_RECHECK_SECONDS + 1) == 4003


async def test_the_recheck_leaves_sockets_that_still_hold_alone(alice, bob, secret, settings):
    settings.CHAT_SOCKET_RECHECK_SECONDS = 0.2
    await sync_to_async(services.memberships.room_member_add)(room=secret, username="bob", by=alice)
    alice_socket, bob_socket = await joined(alice, "secret"), await joined(bob, "secret")
    await drain(bob_socket, quiet=1.0)  # several rechecks

    await send_message(alice_socket, "still members")
    await receive_until(bob_socket, lambda frame: "still members" in visible_text(frame))
    assert await stored("still members")


async def test_a_room_made_private_no_longer_tells_a_non_members_directory_who_is_online(alice, carol):
    room = await sync_to_async(services.rooms.room_get_or_create)(name="lobby", by=alice)
    alice_socket = await joined(alice)
    carol_directory = await open_directory_of(carol)

    await sync_to_async(services.memberships.room_privacy_set)(room=room, private=True, by=alice)
    await receive_until(carol_directory, lambda frame: 'hx-swap-oob="delete"' in frame)
    # Alice's page was opened while the room was public: her leaving must not be announced to every directory.
    await alice_socket.disconnect()

    assert not [frame for frame in await drain(carol_directory, quiet=1.0) if f"online-{room.pk}" in frame]
    await carol_directory.disconnect()


async def frames_until_closed(socket):
    while True:
        output = await socket.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            assert output.get("code") == 4003
            return
        if output.get("text"):
            yield output["text"]


async def open_directory_of(user: User):
    return await directory_socket(await session(user))
