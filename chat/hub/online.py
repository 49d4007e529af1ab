"""The presence ticker: who is online in each room, as this process's pages show it.

What a room's sockets on this process share is kept once per room (`RoomState`): who the online list shows, the
rendered online list, the rendered recent log. A join takes them from there instead of rendering its own.

Presence is announced per room as one coalesced change every `PRESENCE_TICK_SECONDS`: the processes that saw a
user arrive (their first socket anywhere) or leave (their last) publish it; every hub applies it to its own view
of the room and writes one rendered frame to the room's local sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.models import User
from chat import fragments, presence, selectors
from chat.events import OnlineListChanged, PresenceChanged, RoomOnlineCounted
from chat.groups import DIRECTORY_GROUP
from chat.hub.subscriptions import Subscriptions
from chat.logs import LogItem, SharedRenders, log_nbytes
from chat.models import Room

# How often the presence changes of a moment are announced, as one frame per room.
PRESENCE_TICK_SECONDS = 0.2
# How many user ids' names a process keeps for rendering online lists; past it, the oldest go (asked again).
USERNAMES_KEPT = 50_000


@dataclass
class CachedLog:
    """A room's recent log as its joining sockets share it: each message's fragment (chat.logs), from which every
    join assembles its page's log (with its whispers, its unread divider, the minutes left to edit, the day names)."""

    version: int
    # Not the model instances (with their authors and mentions, ~10 KiB each): the rendered items, as UTF-8.
    items: list[LogItem]

    def nbytes(self) -> int:
        """About what it holds in memory: the items' bytes (shared with the message cache) and itself."""
        return log_nbytes(self.items) + sys.getsizeof(self) + 64


@dataclass
class RoomState:
    """What this process's sockets of one room share."""

    room_id: int
    group: str
    # Whether the directories list the room (a public one): only then do they hear its online count.
    listed: bool = True
    # Who the room's online lists on this process show (user id to username); None until loaded.
    online: dict[int, str] | None = None
    loading: asyncio.Future | None = None
    # Announcements that arrived while the list was loading, applied after it.
    early: list[PresenceChanged] = field(default_factory=list)
    # The room's renders (its recent log, its whole online list) are kept in the hub's `SharedRenders`; a log is
    # current while its version is this one.
    log_version: int = 0
    # What this process saw change and has yet to announce.
    arrived: dict[int, str] = field(default_factory=dict)
    departed: set[int] = field(default_factory=set)

    def log_changed(self) -> None:
        self.log_version += 1

    def forget_views(self) -> None:
        """Nothing here is current any more (unsubscribed, or the layer was away): load and render again."""
        self.online = None
        self.log_changed()


def by_name(item: tuple[int, str]) -> str:
    return item[1].lower()


class PresenceTicker(Subscriptions):
    """Counts this process's connections per room and user, and keeps each room's shared view current."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.rooms: dict[int, RoomState] = {}
        self.room_of_group: dict[str, RoomState] = {}
        # Open sockets per (room id, user id): presence counts connections.
        self.connections: Counter[tuple[int, int]] = Counter()
        # Names of users this process has shown, oldest first, at most USERNAMES_KEPT.
        self.usernames: dict[int, str] = {}
        self.renders = SharedRenders(settings.CHAT_LOG_CACHE_BYTES)
        # Whether this process has the (room id, user id) entry in the presence store, and the writes waiting on it.
        self.present: dict[tuple[int, int], bool] = {}
        self.presence_turns: dict[tuple[int, int], list] = {}

    def room(self, room: Room) -> RoomState:
        state = self.rooms.get(room.pk)
        if state is None:
            state = self.rooms[room.pk] = RoomState(room_id=room.pk, group=room.group_name)
        state.listed = room.kind == Room.Kind.PUBLIC
        self.room_of_group[room.group_name] = state
        return state

    def group_emptied(self, group: str) -> None:
        super().group_emptied(group)
        state = self.room_of_group.pop(group, None)
        if state is not None:
            # Unsubscribed, nothing here stays current; a state with news to announce goes after the tick.
            state.forget_views()
            self.renders_forget(state.room_id)
            if not state.arrived and not state.departed:
                self.rooms.pop(state.room_id, None)

    def room_listed_set(self, group: str, *, listed: bool) -> None:
        """A room became private (no directory hears of it any more) or public again."""
        state = self.room_of_group.get(group)
        if state is not None:
            state.listed = listed

    def log_changed(self, group: str) -> None:
        """A message of the room was added, changed or removed: its shared log is rendered again."""
        state = self.room_of_group.get(group)
        if state is not None:
            state.log_changed()
            self.renders.discard(("log", state.room_id))

    def renders_forget(self, room_id: int) -> None:
        self.renders.discard(("log", room_id))
        self.renders.discard(("online", room_id))

    def log_cached(self, state: RoomState) -> CachedLog | None:
        """The room's shared log, if it is kept and current."""
        log = self.renders.get(("log", state.room_id))
        return log if isinstance(log, CachedLog) and log.version == state.log_version else None

    def log_keep(self, state: RoomState, log: CachedLog) -> None:
        """Keep a log just rendered for the room's other sockets: not when it is the room's only one here, nor when
        the room changed while it was rendered."""
        if log.version == state.log_version and len(self.members.get(state.group, ())) > 1:
            self.renders.put(("log", state.room_id), log, log.nbytes())

    def usernames_note(self, names: dict[int, str]) -> None:
        """Remember these names, forgetting the oldest past USERNAMES_KEPT."""
        self.usernames.update(names)
        excess = len(self.usernames) - USERNAMES_KEPT
        if excess > 0:
            for user_id in list(itertools.islice(self.usernames, excess)):
                del self.usernames[user_id]

    async def presence_join(self, room: Room, user: User) -> None:
        """Count one more socket of the user in the room; the user's first anywhere is announced."""
        self.usernames_note({user.pk: user.username})
        key = (room.pk, user.pk)
        self.connections[key] += 1
        async with self.presence_turn(key):
            # Counted again in turn: a leave that went first may have removed the entry this join needs.
            if self.connections[key] > 0 and not self.present.get(key):
                self.present[key] = True
                if await presence.store().add(room_id=room.pk, user_id=user.pk):
                    state = self.room(room)
                    state.departed.discard(user.pk)
                    state.arrived[user.pk] = user.username

    async def presence_leave(self, room: Room, user: User) -> None:
        key = (room.pk, user.pk)
        self.connections[key] -= 1
        if self.connections[key] <= 0:
            del self.connections[key]
        async with self.presence_turn(key):
            last = self.connections.get(key, 0) == 0 and self.present.pop(key, False)
            if last and await presence.store().remove(room_id=room.pk, user_id=user.pk):
                self.departed_note(room.pk, room.group_name, {user.pk})

    @contextlib.asynccontextmanager
    async def presence_turn(self, key: tuple[int, int]) -> AsyncIterator[None]:
        """One presence write at a time per room and user, in the order the sockets came and went: a leave and a
        join of the same user must not reach the store in the opposite order (the user would show offline)."""
        turn = self.presence_turns.get(key)
        if turn is None:
            turn = self.presence_turns[key] = [asyncio.Lock(), 0]
        turn[1] += 1
        try:
            async with turn[0]:
                yield
        finally:
            turn[1] -= 1
            if turn[1] == 0:
                del self.presence_turns[key]

    def departed_note(self, room_id: int, group: str, user_ids: set[int]) -> None:
        state = self.rooms.get(room_id)
        if state is None:
            # No socket of the room is left here: announce it through a state of its own, dropped after the tick.
            state = RoomState(room_id=room_id, group=group)
            self.rooms[room_id] = state
        for user_id in user_ids:
            state.arrived.pop(user_id, None)
            state.departed.add(user_id)

    async def room_online(self, state: RoomState) -> str:
        """The room's whole online list as the presence store has it now, for a joining page.

        Rendered once per distinct list, not once per join. It may run ahead of the announcements, which the
        page then receives again; they drop an entry before adding it, so nobody shows twice.
        """
        if state.online is None:
            await self.online_view(state)
        user_ids = await presence.store().online(room_id=state.room_id)
        names = await self.usernames_load(user_ids, known=state.online or {})
        key = frozenset(names)
        kept = self.renders.get(("online", state.room_id))
        if isinstance(kept, tuple) and kept[0] == key:
            return kept[1]
        users = [User(pk=user_id, username=name) for user_id, name in sorted(names.items(), key=by_name)]
        html = fragments.online_users(room=Room(pk=state.room_id), users=users)
        # Kept for the room's other sockets (a frozenset: about 60 bytes an id).
        if len(self.members.get(state.group, ())) > 1:
            self.renders.put(("online", state.room_id), (key, html), sys.getsizeof(html) + 64 * len(key) + 256)
        return html

    async def usernames_load(self, user_ids: set[int], known: dict[int, str] | None = None) -> dict[int, str]:
        """The names of these users that have an account (those deleted meanwhile have none)."""
        known = known or {}
        names = {user_id: known.get(user_id) or self.usernames.get(user_id) for user_id in user_ids}
        unknown = {user_id for user_id, name in names.items() if name is None}
        if unknown:
            loaded = await database_sync_to_async(selectors.usernames_by_ids)(user_ids=unknown)
            self.usernames_note(loaded)
            names.update(loaded)
        return {user_id: name for user_id, name in names.items() if name is not None}

    async def online_view(self, state: RoomState) -> None:
        """Load, once per subscription, the view of the room that announcements are applied to."""
        while state.online is None:
            if state.loading is None:
                state.loading = asyncio.get_running_loop().create_future()
                try:
                    await self.online_load(state)
                finally:
                    state.loading.set_result(None)
                    state.loading = None
            else:
                await state.loading

    async def online_load(self, state: RoomState) -> None:
        user_ids = await presence.store().online(room_id=state.room_id)
        state.online = await self.usernames_load(user_ids)
        early, state.early = state.early, []
        for event in early:
            await self.presence_apply(state.group, event)

    async def presence_apply(self, group: str, event: PresenceChanged) -> None:
        """An announcement from any process: change this process's view of the room, one frame for its sockets."""
        state = self.room_of_group.get(group)
        if state is None:
            return
        if state.online is None:
            state.early.append(event)
            return
        arrived = {int(user_id): name for user_id, name in event.arrived}
        self.usernames_note(arrived)
        arrived = {user_id: name for user_id, name in arrived.items() if user_id not in state.online}
        departed = [user_id for user_id in event.departed if user_id in state.online]
        if not arrived and not departed:
            return
        for user_id in departed:
            del state.online[user_id]
        state.online.update(arrived)
        members = [User(pk=user_id, username=name) for user_id, name in sorted(arrived.items(), key=by_name)]
        html = fragments.online_users_changed(room=Room(pk=state.room_id), arrived=members, departed_ids=departed)
        # Also to the arriving user's own pages: a departure frame held while a page's snapshot was made can
        # reach it after the snapshot, and only this arrival puts the user back on it.
        await self.fan_out(state.group, OnlineListChanged(html=html))

    async def announce(self) -> None:
        """Publish each room's arrivals and departures of this tick, and a listed room's new count."""
        for state in list(self.rooms.values()):
            if not state.arrived and not state.departed:
                continue
            arrived, departed = state.arrived, sorted(state.departed)
            state.arrived, state.departed = {}, set()
            if state.group not in self.members:  # no socket of the room is left here
                self.rooms.pop(state.room_id, None)
                self.room_of_group.pop(state.group, None)
            if not await self.publish(
                PresenceChanged(arrived=sorted(arrived.items()), departed=departed), state.group
            ):
                continue  # pages catch up when the layer is back (chat.hub.recovery)
            if state.listed:
                count = await presence.store().count(room_id=state.room_id)
                html = fragments.directory_online_count(room=Room(pk=state.room_id), online_count=count)
                await self.publish(RoomOnlineCounted(room_id=state.room_id, html=html), DIRECTORY_GROUP)

    async def heartbeat(self) -> None:
        """Keep this process's presence alive; announce users whose process died."""
        store = presence.store()
        await store.refresh(pairs=set(self.connections))
        for room_id, user_ids in (await store.sweep(room_ids={room_id for room_id, _ in self.connections})).items():
            state = self.rooms.get(room_id)
            if state is not None:
                self.departed_note(room_id, state.group, user_ids)

    def views_forget(self) -> None:
        """After an outage: every room's view is loaded and rendered again."""
        for state in self.rooms.values():
            state.forget_views()
        self.renders.clear()
