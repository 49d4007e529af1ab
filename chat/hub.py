"""One process's share of the channel layer: one subscription per group, each frame handed to every local socket.

Channels gives every socket a channel, a queue, a task and a dispatch per event: a message to a room of a thousand
sockets woke a thousand tasks. Here the process holds one channel; it joins a group when its first socket needs
it and leaves when its last one goes. An event arrives once per process and the hub writes its frame to each local
socket in turn, in one task (docs/performance.md).

What a room's sockets on this process share is kept once per room (`RoomState`): who the online list shows, the
rendered online list, the rendered recent log. A join takes them from there instead of rendering its own.

Presence is announced per room as one coalesced change every `PRESENCE_TICK_SECONDS`: the processes that saw a
user arrive (their first socket anywhere) or leave (their last) publish it; every hub applies it to its own view
of the room and writes one rendered frame to the room's local sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from accounts.models import User
from chat import fragments, presence, selectors, services
from chat.models import Message, Room
from chat.transport import Frame

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

logger = logging.getLogger(__name__)

# How often the presence changes of a moment are announced, as one frame per room.
PRESENCE_TICK_SECONDS = 0.2
# How often the directories hear of a room's new messages (one frame per room with news, however many came).
DIRECTORY_TICK_SECONDS = 1.0
# How many rendered sidebar badges (room, count, mention) a process keeps before it starts again.
SIDEBAR_BADGES_KEPT = 10_000
# While the channel layer does not answer, the hub tries to join its groups again this often (seconds).
LAYER_RETRY_SECONDS = 2.0


class Socket(Protocol):
    """What the hub needs of a consumer."""

    user: User

    def frame_for(self, event: dict) -> Frame | None: ...

    def sidebar_frame(self, event: dict) -> Frame | None: ...

    async def deliver(self, frame: Frame) -> None: ...

    async def hub_event(self, event: dict) -> None: ...


@dataclass
class CachedLog:
    """A room's recent log as every socket without private messages or an unread divider gets it."""

    version: int
    messages: list[Message]
    html: str


@dataclass
class RoomState:
    """What this process's sockets of one room share."""

    room_id: int
    group: str
    # Whether the directories list the room (a public one): only then do they hear its online count.
    listed: bool = True
    # Who the room's online lists on this process show (user id to username); None until loaded.
    online: dict[int, str] | None = None
    # The last whole list rendered for a joining page, and whose it was.
    online_html: str | None = None
    online_html_key: frozenset[int] = frozenset()
    loading: asyncio.Future | None = None
    # Announcements that arrived while the list was loading, applied after it.
    early: list[dict] = field(default_factory=list)
    log: CachedLog | None = None
    log_version: int = 0
    # What this process saw change and has yet to announce.
    arrived: dict[int, str] = field(default_factory=dict)
    departed: set[int] = field(default_factory=set)

    def log_changed(self) -> None:
        self.log_version += 1
        self.log = None


@dataclass
class DirectoryNews:
    """A room's messages since the directories last heard of it from this process."""

    room: Room
    last_message_at: datetime
    authors: Counter[int] = field(default_factory=Counter)
    # (message id, author id) of each: a directory listed after some of them counts only the later ones.
    messages: list[tuple[int, int]] = field(default_factory=list)


class Hub:
    """This process's (this event loop's) subscriptions and sockets."""

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[str, set[Socket]] = defaultdict(set)
        self.rooms: dict[int, RoomState] = {}
        self.room_of_group: dict[str, RoomState] = {}
        # Open sockets per (room id, user id): presence counts connections.
        self.connections: Counter[tuple[int, int]] = Counter()
        self.usernames: dict[int, str] = {}
        self.directory_news: dict[int, DirectoryNews] = {}
        self.subscribing: dict[str, asyncio.Future] = {}
        self.badges: dict[tuple[int, int, bool], Frame] = {}
        self.up = True
        self.tasks: list[asyncio.Task] = []

    # Groups

    async def start(self) -> None:
        if self.channel is None:
            self.channel = await self.layer.new_channel(prefix="hub")
            loop = asyncio.get_running_loop()
            self.tasks = [loop.create_task(self.receive_forever()), loop.create_task(self.tick_forever())]

    async def join(self, socket: Socket, groups: Iterable[str]) -> None:
        """Hand the socket every event of these groups; subscribe to a group on its first local socket."""
        await self.start()
        for group in groups:
            first = not self.members[group]
            self.members[group].add(socket)
            if first and self.up:
                # Later joiners wait for it too: until the layer has the subscription, events would be missed.
                self.subscribing[group] = subscribed = asyncio.get_running_loop().create_future()
                try:
                    await self.layer.group_add(group, self.channel)
                except Exception as error:  # the layer's errors depend on its backend
                    self.layer_lost(error)
                finally:
                    del self.subscribing[group]
                    subscribed.set_result(None)
            elif group in self.subscribing:
                await self.subscribing[group]

    async def leave(self, socket: Socket, groups: Iterable[str]) -> None:
        for group in groups:
            members = self.members.get(group)
            if members is None:
                continue
            members.discard(socket)
            if members:
                continue
            del self.members[group]
            state = self.room_of_group.pop(group, None)
            if state is not None:
                # Unsubscribed, nothing here stays current; a state with news to announce goes after the tick.
                state.online, state.online_html = None, None
                state.log_changed()
                if not state.arrived and not state.departed:
                    self.rooms.pop(state.room_id, None)
            if self.up:
                try:
                    await self.layer.group_discard(group, self.channel)
                except Exception as error:  # its membership expires anyway
                    logger.warning("group not left", extra={"group": group, "reason": type(error).__name__})

    async def receive_forever(self) -> None:
        while True:
            if not self.up:
                await self.rejoin()
                continue
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the layer's errors depend on its backend (Redis, in-memory)
                self.layer_lost(error)
                continue
            try:
                await self.dispatch(event)
            except Exception:
                logger.exception("event not delivered", extra={"event_type": event.get("type")})

    async def dispatch(self, event: dict) -> None:
        group = event.get("group")
        members = self.members.get(group)
        if not members:
            return
        state = self.room_of_group.get(group)
        kind = event["type"]
        if kind == "chat.fragment":
            if state is not None and not event.get("transient"):
                state.log_changed()
            await self.fan_out(members, event)
        elif kind == "presence.changed":
            if state is not None:
                await self.presence_apply(state, event)
        elif kind == "sidebar.news":
            # A badge per distinct count, not per page: each page knows its own count (HubConsumer.sidebar_frame).
            for socket in list(members):
                frame = socket.sidebar_frame(event)
                if frame is not None:
                    await socket.deliver(frame)
        else:
            for socket in list(members):
                await socket.hub_event(event)

    async def fan_out(self, members: set[Socket], event: dict) -> None:
        """Write the event's frame to each local socket that should have it: one task, no queue per socket."""
        for socket in list(members):
            text = socket.frame_for(event)
            if text is not None:
                await socket.deliver(text)

    def sidebar_badges(self, room_id: int, unread: int, mentioned: bool) -> Frame:
        """A sidebar entry's badges with this count, rendered once for every page of this process that shows it."""
        key = (room_id, unread, mentioned)
        frame = self.badges.get(key)
        if frame is None:
            if len(self.badges) >= SIDEBAR_BADGES_KEPT:
                self.badges.clear()
            frame = self.badges[key] = Frame(
                fragments.sidebar_badges(room_id=room_id, unread=unread, mentioned=mentioned)
            )
        return frame

    # The layer's outages

    def layer_lost(self, error: Exception) -> None:
        if not self.up:
            return
        self.up = False
        logger.warning("channel layer unavailable", extra={"reason": type(error).__name__})
        self.tasks.append(asyncio.get_running_loop().create_task(self.tell_every_socket({"type": "layer.lost"})))

    async def tell_every_socket(self, event: dict) -> None:
        for socket in {socket for members in self.members.values() for socket in members}:
            await socket.hub_event(event)

    async def rejoin(self) -> None:
        """Join every group again once the layer answers, then let every socket catch up."""
        await asyncio.sleep(LAYER_RETRY_SECONDS)
        try:
            for group in list(self.members):
                await self.layer.group_add(group, self.channel)
        except Exception:  # still down
            return
        self.up = True
        for state in self.rooms.values():
            state.online, state.online_html = None, None
            state.log_changed()
        logger.info("channel layer back")
        await self.tell_every_socket({"type": "layer.back"})

    # Publishing (on the event loop; the services publish from their thread through chat.broadcast)

    async def publish(self, group: str, event: dict) -> None:
        await self.layer.group_send(group, {**event, "group": group})

    # Rooms: presence, the online list, the log

    def room(self, room: Room) -> RoomState:
        state = self.rooms.get(room.pk)
        if state is None:
            state = self.rooms[room.pk] = RoomState(room_id=room.pk, group=room.group_name)
        state.listed = room.kind == Room.Kind.PUBLIC
        self.room_of_group[room.group_name] = state
        return state

    async def presence_join(self, room: Room, user: User) -> None:
        """Count one more socket of the user in the room; the user's first anywhere is announced."""
        self.usernames[user.pk] = user.username
        key = (room.pk, user.pk)
        self.connections[key] += 1
        if self.connections[key] == 1 and await presence.store().add(room_id=room.pk, user_id=user.pk):
            state = self.room(room)
            state.departed.discard(user.pk)
            state.arrived[user.pk] = user.username

    async def presence_leave(self, room: Room, user: User) -> None:
        key = (room.pk, user.pk)
        self.connections[key] -= 1
        if self.connections[key] > 0:
            return
        del self.connections[key]
        if await presence.store().remove(room_id=room.pk, user_id=user.pk):
            self.departed_note(room.pk, room.group_name, {user.pk})

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
        unknown = user_ids - self.usernames.keys()
        if unknown:
            self.usernames.update(await database_sync_to_async(selectors.usernames_by_ids)(user_ids=unknown))
        key = frozenset(user_id for user_id in user_ids if user_id in self.usernames)
        if state.online_html is None or state.online_html_key != key:
            names = sorted(((user_id, self.usernames[user_id]) for user_id in key), key=by_name)
            users = [User(pk=user_id, username=name) for user_id, name in names]
            state.online_html = fragments.online_users(room=Room(pk=state.room_id), users=users)
            state.online_html_key = key
        return state.online_html

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
        unknown = user_ids - self.usernames.keys()
        if unknown:
            self.usernames.update(await database_sync_to_async(selectors.usernames_by_ids)(user_ids=unknown))
        state.online = {user_id: self.usernames[user_id] for user_id in user_ids if user_id in self.usernames}
        early, state.early = state.early, []
        for event in early:
            await self.presence_apply(state, event)

    async def presence_apply(self, state: RoomState, event: dict) -> None:
        """An announcement from any process: change this process's view of the room, one frame for its sockets."""
        if state.online is None:
            state.early.append(event)
            return
        arrived = {int(user_id): name for user_id, name in event["arrived"]}
        self.usernames.update(arrived)
        arrived = {user_id: name for user_id, name in arrived.items() if user_id not in state.online}
        departed = [user_id for user_id in event["departed"] if user_id in state.online]
        if not arrived and not departed:
            return
        for user_id in departed:
            del state.online[user_id]
        state.online.update(arrived)
        members = [User(pk=user_id, username=name) for user_id, name in sorted(arrived.items(), key=by_name)]
        html = fragments.online_users_changed(room=Room(pk=state.room_id), arrived=members, departed_ids=departed)
        # Also to the arriving user's own pages: a departure frame held while a page's snapshot was made can
        # reach it after the snapshot, and only this arrival puts the user back on it.
        event = {"type": "chat.fragment", "html": html, "transient": True}
        await self.fan_out(self.members.get(state.group, set()), event)

    async def tick_forever(self) -> None:
        """Announce each moment's presence changes; every heartbeat, refresh this process's entries."""
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + settings.CHAT_PRESENCE_HEARTBEAT
        next_directory = loop.time() + DIRECTORY_TICK_SECONDS
        while True:
            await asyncio.sleep(PRESENCE_TICK_SECONDS)
            try:
                if loop.time() >= next_heartbeat:
                    next_heartbeat = loop.time() + settings.CHAT_PRESENCE_HEARTBEAT
                    await self.heartbeat()
                await self.announce()
                if loop.time() >= next_directory:
                    next_directory = loop.time() + DIRECTORY_TICK_SECONDS
                    await self.directory_announce()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("presence announcement failed; retrying")

    async def announce(self) -> None:
        for state in list(self.rooms.values()):
            if not state.arrived and not state.departed:
                continue
            arrived, departed = state.arrived, sorted(state.departed)
            state.arrived, state.departed = {}, set()
            if state.group not in self.members:  # no socket of the room is left here
                self.rooms.pop(state.room_id, None)
                self.room_of_group.pop(state.group, None)
            event = {"type": "presence.changed", "arrived": sorted(arrived.items()), "departed": departed}
            if not self.up:
                continue
            try:
                await self.publish(state.group, event)
                if not state.listed:
                    continue
                count = await presence.store().count(room_id=state.room_id)
                html = fragments.directory_online_count(room=Room(pk=state.room_id), online_count=count)
                await self.publish(services.DIRECTORY_GROUP, {"type": "chat.fragment", "html": html})
            except Exception as error:  # pages catch up when the layer is back (layer.back)
                self.layer_lost(error)

    def directory_note(self, *, room: Room, message_id: int, last_message_at: datetime, author_id: int) -> None:
        """One more message in a room, for the directories' next tick."""
        news = self.directory_news.get(room.pk)
        if news is None:
            news = self.directory_news[room.pk] = DirectoryNews(room=room, last_message_at=last_message_at)
        news.last_message_at = max(news.last_message_at, last_message_at)
        news.authors[author_id] += 1
        news.messages.append((message_id, author_id))

    async def directory_announce(self) -> None:
        """Each room's news as one frame for every directory: its last activity, and one more unread per message.

        A directory page adds the unread marks of the messages its user did not write (RoomDirectoryConsumer).
        """
        news, self.directory_news = self.directory_news, {}
        for item in news.values():
            event = {
                "type": "chat.fragment",
                "html": fragments.directory_activity(room=item.room, last_message_at=item.last_message_at),
                "news_html": fragments.directory_unread_one_more(room=item.room),
                "news_count": item.authors.total(),
                "authors": list(item.authors.items()),
                "messages": item.messages,
                "first_id": min(message_id for message_id, _ in item.messages),
            }
            try:
                await self.publish(services.DIRECTORY_GROUP, event)
            except Exception as error:  # directories catch up when their socket reconnects
                self.layer_lost(error)
                return

    async def heartbeat(self) -> None:
        """Keep this process's presence and group memberships alive; announce users whose process died."""
        store = presence.store()
        await store.refresh(pairs=set(self.connections))
        for room_id, user_ids in (await store.sweep(room_ids={room_id for room_id, _ in self.connections})).items():
            state = self.rooms.get(room_id)
            if state is not None:
                self.departed_note(room_id, state.group, user_ids)
        if self.up:
            try:
                for group in list(self.members):
                    await self.layer.group_add(group, self.channel)
            except Exception as error:
                self.layer_lost(error)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):  # cancelled
                await task


def frame_of(event: dict, *, news: int = 0) -> Frame:
    """The event's frame, made once for all the sockets it goes to (with `news` unread marks of a directory)."""
    key = f"_frame{news}"
    frame = event.get(key)
    if frame is None:
        frame = event[key] = Frame(event["html"] + event["news_html"] * news if news else event["html"])
    return frame


def by_name(item: tuple[int, str]) -> str:
    return item[1].lower()


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub(get_channel_layer())
    return found


async def directory_news_note(*, room: Room, message_id: int, last_message_at: datetime, author_id: int) -> None:
    """Tell the directories of a room's new message: through this process's hub, coalesced, when one is running."""
    found = _hubs.get(asyncio.get_running_loop())
    news = {"room": room, "message_id": message_id, "last_message_at": last_message_at, "author_id": author_id}
    if found is not None and found.channel is not None:
        found.directory_note(**news)
        return
    # Outside a server (a management command, a test without sockets): at once.
    once = found or Hub(get_channel_layer())
    once.directory_note(**news)
    await once.directory_announce()


async def hubs_stop() -> None:
    """Stop every hub (tests: each runs its own event loop)."""
    for loop, found in list(_hubs.items()):
        if loop is asyncio.get_running_loop():
            await found.stop()
        else:
            for task in found.tasks:
                task.cancel()
    _hubs.clear()
