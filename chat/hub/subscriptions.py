"""Subscriptions and fan-out: one channel per process, a group joined on its first local socket and left with its
last, and each event's frame written to every local socket of its group in one task, with no queue per socket."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from accounts.models import User
from chat import broadcasts, fragments
from chat.events import ConversationNews, Event, Fragment
from chat.grants import SocketGrant
from chat.transport import Frame

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

logger = logging.getLogger(__name__)

# How many rendered sidebar badges (room, count, mention) a process keeps before it starts again.
SIDEBAR_BADGES_KEPT = 10_000
# How often every socket is told it is live; a page that hears nothing for longer than its stylesheet allows
# (25 s, static/css/chat.css, `.connection`) shows "Reconnecting…".
CONNECTION_RENEW_SECONDS = 10.0


class Socket(Protocol):
    """What the hub needs of a consumer (chat.consumers)."""

    user: User
    # Set once its session ended or its conversation closed to it: nothing more is written to it.
    session_ended: bool
    # What it was opened with, checked again by chat.hub.recheck (None: not yet, or not logged in).
    grant: SocketGrant | None

    def frame_for(self, event: Fragment) -> Frame | None: ...

    def sidebar_frames(self, event: ConversationNews) -> list[Frame]: ...

    async def deliver(self, frame: Frame) -> None: ...

    async def hub_event(self, event: Event) -> None: ...

    async def revoke(self, code: int) -> None: ...


class Subscriptions:
    """The groups this process's sockets listen on, and the frames handed to them."""

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[str, set[Socket]] = defaultdict(set)
        self.subscribing: dict[str, asyncio.Future] = {}
        # When the layer last took each group's membership (time.time()): renewed before it expires
        # (chat.hub.recovery); a group missing here was not taken.
        self.group_added_at: dict[str, float] = {}
        self.badges: dict[tuple[int, int, bool], Frame] = {}
        self.live_frame: Frame | None = None
        # Whether the channel layer answers (chat.hub.recovery).
        self.up = True

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
                    async with asyncio.timeout(broadcasts.LAYER_TIMEOUT_SECONDS):
                        await self.layer.group_add(group, self.channel)
                    if group in self.members:  # not left meanwhile
                        self.group_added_at[group] = time.time()
                except Exception as error:  # the layer's errors depend on its backend; a timeout is a partition
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
            self.group_added_at.pop(group, None)
            self.group_emptied(group)
            if self.up:
                try:
                    async with asyncio.timeout(broadcasts.LAYER_TIMEOUT_SECONDS):
                        await self.layer.group_discard(group, self.channel)
                except Exception as error:  # its membership expires anyway
                    logger.warning("group not left", extra={"group": group, "reason": type(error).__name__})

    async def publish(self, event: Event, *groups: str) -> bool:
        """Publish through chat.broadcasts' one path; a failure means the layer is lost (chat.hub.recovery)."""
        if not self.up:
            return False
        sent = await broadcasts.send(event, *groups)
        if not sent:
            self.layer_lost(None)
        return sent

    async def fan_out(self, group: str, event: Fragment) -> None:
        """Write the event's frame to each local socket of the group that shows it: one task, no queue per socket."""
        for socket in list(self.members.get(group, ())):
            frame = socket.frame_for(event)
            if frame is not None:
                await socket.deliver(frame)

    async def sidebar_news(self, group: str, event: ConversationNews) -> None:
        """A badge per distinct count, not per page: each page knows its own count (HubConsumer.sidebar_frames)."""
        for socket in list(self.members.get(group, ())):
            for frame in socket.sidebar_frames(event):
                await socket.deliver(frame)

    async def act(self, group: str, event: Event) -> None:
        """An event each socket acts on itself (a session ended, access changed, ...)."""
        for socket in list(self.members.get(group, ())):
            await socket.hub_event(event)

    async def connection_renew(self) -> None:
        """Tell every local socket it is live: one frame, rendered once, for all of them."""
        if self.live_frame is None:
            self.live_frame = Frame(fragments.connection(state="live"))
        for socket in {socket for members in self.members.values() for socket in members}:
            if not socket.session_ended:
                await socket.deliver(self.live_frame)

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

    # Defined by the other jobs of the hub (chat.hub).

    async def start(self) -> None:
        raise NotImplementedError

    def layer_lost(self, error: Exception | None) -> None:
        raise NotImplementedError

    def recheck_soon(self) -> None:
        raise NotImplementedError

    def group_emptied(self, group: str) -> None:
        """No local socket listens on the group any more."""
