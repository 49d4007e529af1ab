"""Who is online where: per (room, user, server process) entries that expire unless their process refreshes them.

A process counts its own sockets itself (chat.hub); this store only learns when a user's first socket of a room
opens on a process or its last one closes there, and answers whether that made the user arrive in or leave the
room as a whole. Two stores with one interface:

- `MemoryPresence`, the embedded default: one process serves everything, so its memory is the truth.
- `RedisPresence`, when `REDIS_URL` is set: shared by every process. Per room, a sorted set of user ids scored by
  the latest expiry any process gave them, and per (room, user) a sorted set of server ids scored by expiry. A
  process that dies stops refreshing its entries; they expire after `CHAT_PRESENCE_TIMEOUT` and the other
  processes' heartbeat sweeps announce those users gone.

While Redis does not answer, the store answers from this process's own sockets (`ok` says which): a page keeps an
online list of the people on its own process, and the outage is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import defaultdict

import redis
import redis.asyncio
from django.conf import settings

logger = logging.getLogger(__name__)

# Identifies this server process in the store, so that a dead process's entries can expire.
SERVER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

# KEYS: room set, (room, user) set. ARGV: now, expiry, server, user, the room set's TTL in ms.
# Returns 1 if the user was not in the room.
_ADD = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local before = redis.call('ZCARD', KEYS[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], math.floor(ARGV[2] * 1000))
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if before == 0 then return 1 end
return 0
"""

# KEYS: room set, (room, user) set. ARGV: now, server, user. Returns 1 if the user is now gone from the room.
_REMOVE = """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  return redis.call('ZREM', KEYS[1], ARGV[3])
end
return 0
"""

# The heartbeat's scripts take many rooms at once (a batch each, all batches in one pipeline): one round trip per
# heartbeat, however many rooms. Keys are made from the prefix as room_key and pair_key make them.

# ARGV: now, prefix, then room ids. Returns room, user, room, user, ...: the users whose every entry expired.
_SWEEP = """
local now, prefix, gone = ARGV[1], ARGV[2], {}
for i = 3, #ARGV do
  local room = prefix .. ':' .. ARGV[i]
  for _, user in ipairs(redis.call('ZRANGEBYSCORE', room, '-inf', now)) do
    local key = room .. ':' .. user
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) == 0 then
      redis.call('ZREM', room, user)
      table.insert(gone, ARGV[i])
      table.insert(gone, user)
    end
  end
end
return gone
"""

# ARGV: expiry, server, the room sets' TTL in ms, prefix, then room id, user id, room id, user id, ...
_REFRESH = """
local expiry, server, ttl, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local at = math.floor(tonumber(expiry) * 1000)
for i = 5, #ARGV, 2 do
  local room = prefix .. ':' .. ARGV[i]
  local pair = room .. ':' .. ARGV[i + 1]
  redis.call('ZADD', pair, expiry, server)
  redis.call('PEXPIREAT', pair, at)
  redis.call('ZADD', room, 'GT', expiry, ARGV[i + 1])
  redis.call('PEXPIRE', room, ttl)
end
return 0
"""

# Rooms or (room, user) entries per script: each script holds Redis for a few milliseconds at most.
HEARTBEAT_BATCH = 1_000


class MemoryPresence:
    """One process's sockets are everyone's: the embedded default (in-memory channel layer)."""

    ok = True

    def __init__(self) -> None:
        self.rooms: dict[int, set[int]] = defaultdict(set)

    async def add(self, *, room_id: int, user_id: int) -> bool:
        users = self.rooms[room_id]
        arrived = user_id not in users
        users.add(user_id)
        return arrived

    async def remove(self, *, room_id: int, user_id: int) -> bool:
        users = self.rooms.get(room_id, set())
        departed = user_id in users
        users.discard(user_id)
        if not users:
            self.rooms.pop(room_id, None)
        return departed

    async def online(self, *, room_id: int) -> set[int]:
        return set(self.rooms.get(room_id, ()))

    async def count(self, *, room_id: int) -> int:
        return len(self.rooms.get(room_id, ()))

    async def refresh(self, *, pairs: set[tuple[int, int]]) -> None:
        """Nothing expires: the process that holds the sockets is the only one."""

    async def sweep(self, *, room_ids: set[int]) -> dict[int, set[int]]:
        return {}

    def counts(self, *, room_ids: list[int]) -> dict[int, int]:
        return {room_id: len(self.rooms.get(room_id, ())) for room_id in room_ids}

    def rooms_of(self, *, user_id: int, room_ids: list[int]) -> set[int]:
        return {room_id for room_id in room_ids if user_id in self.rooms.get(room_id, ())}

    def online_now(self, *, room_id: int) -> set[int]:
        return set(self.rooms.get(room_id, ()))


class RedisPresence:
    """Shared by every process through Redis; entries expire unless their process refreshes them."""

    def __init__(self, url: str, prefix: str = "chat:presence", server: str = SERVER_ID) -> None:
        self.url, self.prefix, self.server = url, prefix, server
        self.ok = True
        # Short timeouts: presence is never worth holding a page or a join for.
        options = {"socket_connect_timeout": 1, "socket_timeout": 1}
        self.sync = redis.Redis.from_url(url, **options)
        self._async: dict[int, redis.asyncio.Redis] = {}
        self.options = options
        # What this process itself holds, the answer while Redis is down.
        self.local: dict[int, set[int]] = defaultdict(set)

    @property
    def aio(self) -> redis.asyncio.Redis:
        """One client per event loop (tests run each in a loop of its own)."""
        loop = id(asyncio.get_running_loop())
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = redis.asyncio.Redis.from_url(self.url, **self.options)
        return client

    def room_key(self, room_id: int) -> str:
        return f"{self.prefix}:{room_id}"

    def pair_key(self, room_id: int, user_id: int | str) -> str:
        return f"{self.prefix}:{room_id}:{user_id}"

    @staticmethod
    def expiry(now: float) -> float:
        return now + settings.CHAT_PRESENCE_TIMEOUT

    @staticmethod
    def ttl_ms() -> int:
        """How long a room's set outlives its last refresh (its entries expire on their own before that)."""
        return int(settings.CHAT_PRESENCE_TIMEOUT * 2000)

    def went_down(self, error: Exception) -> None:
        if self.ok:
            logger.warning(
                "presence store unavailable; online lists are this process's only",
                extra={
                    "reason": type(error).__name__,
                },
            )
        self.ok = False

    def came_back(self) -> None:
        if not self.ok:
            logger.info("presence store back")
        self.ok = True

    async def add(self, *, room_id: int, user_id: int) -> bool:
        arrived_here = user_id not in self.local[room_id]
        self.local[room_id].add(user_id)
        now = time.time()
        keys = [self.room_key(room_id), self.pair_key(room_id, user_id)]
        try:
            arrived = await self.aio.eval(_ADD, 2, *keys, now, self.expiry(now), self.server, user_id, self.ttl_ms())
        except redis.RedisError as error:
            self.went_down(error)
            return arrived_here
        self.came_back()
        return bool(arrived)

    async def remove(self, *, room_id: int, user_id: int) -> bool:
        self.local[room_id].discard(user_id)
        if not self.local[room_id]:
            self.local.pop(room_id)
        keys = [self.room_key(room_id), self.pair_key(room_id, user_id)]
        try:
            departed = await self.aio.eval(_REMOVE, 2, *keys, time.time(), self.server, user_id)
        except redis.RedisError as error:
            self.went_down(error)
            return True
        self.came_back()
        return bool(departed)

    async def online(self, *, room_id: int) -> set[int]:
        try:
            members = await self.aio.zrangebyscore(self.room_key(room_id), time.time(), "+inf")
        except redis.RedisError as error:
            self.went_down(error)
            return set(self.local.get(room_id, ()))
        self.came_back()
        return {int(member) for member in members}

    async def count(self, *, room_id: int) -> int:
        try:
            return await self.aio.zcount(self.room_key(room_id), time.time(), "+inf")
        except redis.RedisError as error:
            self.went_down(error)
            return len(self.local.get(room_id, ()))

    async def refresh(self, *, pairs: set[tuple[int, int]]) -> None:
        """Extend this process's entries; after an outage this also puts them back. One round trip."""
        if not pairs:
            return
        expiry = self.expiry(time.time())
        pipe = self.aio.pipeline(transaction=False)
        ordered = list(pairs)
        for start in range(0, len(ordered), HEARTBEAT_BATCH):
            args = [item for pair in ordered[start : start + HEARTBEAT_BATCH] for item in pair]
            pipe.eval(_REFRESH, 0, expiry, self.server, self.ttl_ms(), self.prefix, *args)
        try:
            await pipe.execute()
        except redis.RedisError as error:
            self.went_down(error)
            return
        self.came_back()

    async def sweep(self, *, room_ids: set[int]) -> dict[int, set[int]]:
        """The users of these rooms whose every process stopped refreshing them (it died), now removed. One round
        trip."""
        if not room_ids:
            return {}
        now = time.time()
        pipe = self.aio.pipeline(transaction=False)
        ordered = list(room_ids)
        for start in range(0, len(ordered), HEARTBEAT_BATCH):
            pipe.eval(_SWEEP, 0, now, self.prefix, *ordered[start : start + HEARTBEAT_BATCH])
        try:
            results = await pipe.execute()
        except redis.RedisError as error:
            self.went_down(error)
            return {}
        gone: dict[int, set[int]] = defaultdict(set)
        for flat in results:
            for room, user in zip(flat[::2], flat[1::2], strict=True):
                gone[int(room)].add(int(user))
        return dict(gone)

    def counts(self, *, room_ids: list[int]) -> dict[int, int]:
        """People online per room, for a page (synchronous)."""
        now = time.time()
        try:
            pipe = self.sync.pipeline(transaction=False)
            for room_id in room_ids:
                pipe.zcount(self.room_key(room_id), now, "+inf")
            return dict(zip(room_ids, pipe.execute(), strict=True))
        except redis.RedisError as error:
            self.went_down(error)
            return {room_id: len(self.local.get(room_id, ())) for room_id in room_ids}

    def rooms_of(self, *, user_id: int, room_ids: list[int]) -> set[int]:
        """Which of these rooms the user has open right now (synchronous)."""
        now = time.time()
        try:
            pipe = self.sync.pipeline(transaction=False)
            for room_id in room_ids:
                pipe.zscore(self.room_key(room_id), user_id)
            scores = pipe.execute()
        except redis.RedisError as error:
            self.went_down(error)
            return {room_id for room_id in room_ids if user_id in self.local.get(room_id, ())}
        return {room_id for room_id, score in zip(room_ids, scores, strict=True) if score and score >= now}

    def online_now(self, *, room_id: int) -> set[int]:
        """The room's online users, for a page (synchronous)."""
        try:
            return {int(member) for member in self.sync.zrangebyscore(self.room_key(room_id), time.time(), "+inf")}
        except redis.RedisError as error:
            self.went_down(error)
            return set(self.local.get(room_id, ()))


_store: MemoryPresence | RedisPresence | None = None


def store() -> MemoryPresence | RedisPresence:
    """This process's presence store, chosen by settings (Redis when `REDIS_URL` is set)."""
    global _store
    if _store is None:
        _store = RedisPresence(settings.REDIS_URL) if settings.REDIS_URL else MemoryPresence()
    return _store


def store_reset() -> None:
    """Forget the store (tests change settings between runs)."""
    global _store
    _store = None
