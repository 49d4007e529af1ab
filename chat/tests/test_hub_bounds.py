"""A process's hub keeps what it needs, within bounds: shared renders in a byte budget, nothing per room or user that
only grows."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from accounts.models import User
from chat import selectors
from chat.hub import CachedLog, hub, online
from chat.hub.online import LoggedMessage, SharedRenders
from chat.models import Room
from chat.tests.conftest import joined


def lobby(room_id: int = 1) -> Room:
    return Room(pk=room_id, name=f"room{room_id}", kind=Room.Kind.PUBLIC)


def test_shared_renders_stay_within_their_byte_budget_and_evict_the_least_recently_used():
    renders = SharedRenders(budget=1_000)
    renders.put("a", "A", 400)
    renders.put("b", "B", 400)
    assert renders.get("a") == "A"  # now the most recently used
    renders.put("c", "C", 400)

    assert renders.get("b") is None
    assert (renders.get("a"), renders.get("c")) == ("A", "C")
    assert renders.bytes == 800
    renders.put("huge", "H", 1_001)  # larger than the whole budget: not kept, nothing evicted for it
    assert renders.get("huge") is None
    assert renders.bytes == 800
    renders.discard("a")
    assert renders.bytes == 400


def test_a_shared_log_keeps_ids_and_authors_not_model_instances():
    log = CachedLog(version=1, messages=[LoggedMessage(5, 2, False)], html="<ol></ol>")
    assert selectors.unread_divider_id(messages=log.messages, last_read_id=4, user=User(pk=3)) == 5
    assert log.nbytes() < 1_000


@pytest.mark.django_db(transaction=True)
async def test_a_room_with_one_socket_here_keeps_no_log_and_its_second_socket_shares_one(alice, bob):
    alice_socket = await joined(alice)
    room = await sync_to_async(selectors.room_get)(name="lobby")
    assert hub().renders.get(("log", room.pk)) is None
    assert hub().renders.bytes == 0

    bob_socket = await joined(bob)
    kept = hub().renders.get(("log", room.pk))
    assert isinstance(kept, CachedLog)
    assert all(isinstance(message, LoggedMessage) for message in kept.messages)

    await bob_socket.disconnect()
    await alice_socket.disconnect()
    await asyncio.sleep(0.3)  # the tick that announces the departures drops the room's state
    assert hub().renders.bytes == 0
    assert hub().rooms == {}
    assert hub().room_of_group == {}


@pytest.mark.django_db(transaction=True)
async def test_the_log_cache_keeps_nothing_over_its_budget(alice, bob, settings):
    settings.CHAT_LOG_CACHE_BYTES = 100
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    second = await joined(bob)  # a third socket renders its log again: nothing was kept
    assert hub().renders.bytes == 0
    for socket in (alice_socket, bob_socket, second):
        await socket.disconnect()


async def test_usernames_stay_bounded_however_many_users_come_and_go(monkeypatch):
    monkeypatch.setattr(online, "USERNAMES_KEPT", 10)
    for user_id in range(1, 40):
        user = User(pk=user_id, username=f"user{user_id}")
        await hub().presence_join(lobby(), user)
        await hub().presence_leave(lobby(), user)
    assert len(hub().usernames) == 10
    assert set(hub().usernames) == set(range(30, 40))  # the most recent
