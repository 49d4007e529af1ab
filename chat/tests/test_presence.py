"""The presence store: in memory (one process) and in a real Redis shared by several processes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from accounts.models import User
from chat import presence
from chat.hub import hub
from chat.models import Room
from chat.presence import MemoryPresence, RedisPresence
from tests.support.servers import redis_url_or_skip

ROOM = 7


@pytest.fixture
def redis_url() -> str:
    return redis_url_or_skip()


def two_processes(url: str) -> tuple[RedisPresence, RedisPresence]:
    """Two server processes' stores sharing one Redis (a fresh key prefix per test)."""
    prefix = f"test-presence-{uuid.uuid4().hex[:8]}"
    return RedisPresence(url, prefix=prefix, server="process-a"), RedisPresence(url, prefix=prefix, server="process-b")


async def test_memory_a_user_arrives_with_their_first_socket_and_leaves_with_their_last():
    store = MemoryPresence()
    assert await store.add(room_id=ROOM, user_id=1) is True
    assert await store.add(room_id=ROOM, user_id=2) is True
    assert await store.online(room_id=ROOM) == {1, 2}
    assert store.counts(room_ids=[ROOM, ROOM + 1]) == {ROOM: 2, ROOM + 1: 0}
    assert await store.remove(room_id=ROOM, user_id=1) is True
    assert store.rooms_of(user_id=2, room_ids=[ROOM, ROOM + 1]) == {ROOM}
    assert await store.online(room_id=ROOM) == {2}


async def test_redis_a_user_on_two_processes_stays_online_until_both_let_go(redis_url):
    a, b = two_processes(redis_url)
    assert await a.add(room_id=ROOM, user_id=1) is True
    assert await b.add(room_id=ROOM, user_id=1) is False  # already online through process a
    assert await a.remove(room_id=ROOM, user_id=1) is False
    assert await b.online(room_id=ROOM) == {1}
    assert a.counts(room_ids=[ROOM]) == {ROOM: 1}
    assert await b.remove(room_id=ROOM, user_id=1) is True
    assert await a.online(room_id=ROOM) == set()
    assert b.counts(room_ids=[ROOM]) == {ROOM: 0}


async def test_redis_the_users_of_a_process_that_died_expire_and_are_swept_by_another(redis_url, settings):
    settings.CHAT_PRESENCE_TIMEOUT = 1
    dead, alive = two_processes(redis_url)
    await dead.add(room_id=ROOM, user_id=1)
    await alive.add(room_id=ROOM, user_id=2)
    await asyncio.sleep(0.6)
    await alive.refresh(pairs={(ROOM, 2)})  # the living process keeps refreshing; the dead one cannot
    await asyncio.sleep(0.6)

    assert await alive.online(room_id=ROOM) == {2}  # expired entries are not counted, swept or not
    assert alive.counts(room_ids=[ROOM]) == {ROOM: 1}
    assert await alive.sweep(room_ids={ROOM}) == {ROOM: {1}}
    assert await alive.sweep(room_ids={ROOM}) == {}  # announced once


async def test_redis_down_the_store_answers_from_this_process_and_says_so():
    store = RedisPresence("redis://127.0.0.1:1/0", prefix="nowhere")  # nothing listens on port 1
    assert await store.add(room_id=ROOM, user_id=1) is True
    assert store.ok is False
    assert await store.online(room_id=ROOM) == {1}
    assert store.counts(room_ids=[ROOM]) == {ROOM: 1}
    assert await store.remove(room_id=ROOM, user_id=1) is True
    assert await store.online(room_id=ROOM) == set()


async def test_a_leave_and_a_join_of_one_user_reach_the_store_in_the_order_they_happened(monkeypatch):
    """A join whose write is slow, then a leave: the leave must not overtake it and leave the user listed."""
    store = presence.store()
    written = store.add

    async def slow_add(**kwargs: int) -> bool:
        await asyncio.sleep(0.1)
        return await written(**kwargs)

    monkeypatch.setattr(store, "add", slow_add)
    room, user = Room(pk=1, name="lobby"), User(pk=7, username="alice")

    joining = asyncio.create_task(hub().presence_join(room, user))
    await asyncio.sleep(0)  # the join is counted and its write under way
    await hub().presence_leave(room, user)
    await joining

    assert await store.online(room_id=room.pk) == set()

    await hub().presence_join(room, user)
    assert await store.online(room_id=room.pk) == {user.pk}
