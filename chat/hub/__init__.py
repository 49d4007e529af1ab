"""One process's share of the channel layer: one subscription per group, each frame handed to every local socket.

Channels gives every socket a channel, a queue, a task and a dispatch per event: a message to a room of a thousand
sockets woke a thousand tasks. Here the process holds one channel; it joins a group when its first socket needs
it and leaves when its last one goes. An event arrives once per process and the hub writes its frame to each local
socket in turn, in one task (docs/performance.md).

The hub's jobs, each in a module of its own:
- `subscriptions`: the groups and the fan-out of frames to local sockets;
- `online`: the presence ticker, and what a room's local sockets share (online list, recent log), within a budget
  of bytes;
- `directory`: the news of listed rooms and their online counts, told to the directories once a tick;
- `recovery`: what happens when the channel layer stops answering and when it comes back (pages catch up in the
  background), and the heartbeat (presence, group memberships renewed when due), a task of its own;
- `recheck`: sockets fail closed, their sessions and access checked again in a batch.
`Hub` below joins them, receives the events and dispatches each on its type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.layers import get_channel_layer
from django.conf import settings

from chat.events import (
    AccessChanged,
    ConversationJoined,
    ConversationLeft,
    ConversationNews,
    ConversationRead,
    Event,
    Fragment,
    MentionFlagged,
    MessageAppended,
    MessageReplaced,
    MessagesRemoved,
    NotificationLevelChanged,
    PresenceChanged,
    RoomListed,
    RoomNews,
    RoomOnlineCounted,
    RoomStatusChanged,
    RoomUnlisted,
    SessionEnded,
    ThreadNews,
    ThreadRead,
    ThreadSummaryChanged,
    TypingNoticed,
    from_wire,
)
from chat.hub.directory import DIRECTORY_TICK_SECONDS, DirectoryDesk
from chat.hub.online import PRESENCE_TICK_SECONDS, CachedLog, RoomState
from chat.hub.recheck import Recheck
from chat.hub.recovery import LAYER_RETRY_SECONDS, Recovery
from chat.hub.subscriptions import CONNECTION_RENEW_SECONDS, Socket

__all__ = ["CachedLog", "Hub", "RoomState", "Socket", "hub", "hubs_stop"]

logger = logging.getLogger(__name__)


class Hub(Recovery, DirectoryDesk, Recheck):
    """This process's (this event loop's) subscriptions and sockets."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        if self.channel is None:
            self.channel = await self.layer.new_channel(prefix="hub")
            loop = asyncio.get_running_loop()
            self.tasks = [
                loop.create_task(self.receive_forever()),
                loop.create_task(self.tick_forever()),
                loop.create_task(self.heartbeat_forever()),
            ]

    async def receive_forever(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the layer's errors depend on its backend (Redis, in-memory)
                self.layer_lost(error)
                await asyncio.sleep(LAYER_RETRY_SECONDS)
                continue
            received = from_wire(message)
            if received is None or received[0] not in self.members:
                continue
            group, event = received
            try:
                await self.dispatch(group, event)
            except Exception:
                logger.exception("event not delivered", extra={"event_type": event.kind})

    async def dispatch(self, group: str, event: Event) -> None:
        """Each kind of event to the job that handles it."""
        match event:
            case MessageAppended() | MessageReplaced() | MessagesRemoved() if event.thread_id is not None:
                await self.fan_out(group, event)  # a reply: not in the conversation's shared log
            case MessageAppended() | MessageReplaced() | MessagesRemoved() | ThreadSummaryChanged():
                self.log_changed(group)
                await self.fan_out(group, event)
            case TypingNoticed() | RoomListed() | MentionFlagged():
                await self.fan_out(group, event)
            case RoomUnlisted():
                self.directory_count_drop(event.room_id)  # a count gathered before must not follow it
                await self.fan_out(group, event)
            case RoomOnlineCounted():
                self.directory_count_note(event)
            case PresenceChanged():
                await self.presence_apply(group, event)
            case RoomNews():
                self.directory_note(event)
            case ConversationNews():
                await self.sidebar_news(group, event)
            case AccessChanged():
                self.room_listed_set(group, listed=not event.members_only)
                await self.act(group, event)
            case (
                SessionEnded()
                | RoomStatusChanged()
                | ConversationJoined()
                | ConversationLeft()
                | ConversationRead()
                | NotificationLevelChanged()
                | ThreadNews()
                | ThreadRead()
            ):
                await self.act(group, event)
            case Fragment():
                await self.fan_out(group, event)
            case _:
                logger.warning("event of no job dropped", extra={"event_type": event.kind})

    async def tick_forever(self) -> None:
        """Announce each moment's presence changes and directory news; while the layer is lost, try to recover;
        check the sockets' grants; tell every page it is live."""
        loop = asyncio.get_running_loop()
        next_directory = loop.time() + DIRECTORY_TICK_SECONDS
        next_renewal = loop.time() + CONNECTION_RENEW_SECONDS
        while True:
            await asyncio.sleep(PRESENCE_TICK_SECONDS)
            try:
                if not self.up:
                    await self.recover()
                if self.recheck_due():
                    await self.recheck()
                if self.up:
                    await self.undelivered_publish()
                await self.announce()
                await self.directory_counts_announce()
                if loop.time() >= next_directory:
                    next_directory = loop.time() + DIRECTORY_TICK_SECONDS
                    await self.directory_announce()
                if loop.time() >= next_renewal:
                    next_renewal = loop.time() + CONNECTION_RENEW_SECONDS
                    await self.connection_renew()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("presence announcement failed; retrying")

    async def heartbeat_forever(self) -> None:
        """Every heartbeat, keep this process alive (presence, group memberships): a task of its own, so that a long
        one never delays the presence tick."""
        while True:
            await asyncio.sleep(settings.CHAT_PRESENCE_HEARTBEAT)
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("heartbeat failed; retrying")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):  # cancelled
                await task
        await self.background_stop()


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub(get_channel_layer())
    return found


async def hubs_stop() -> None:
    """Stop every hub (tests: each runs its own event loop)."""
    for loop, found in list(_hubs.items()):
        if loop is asyncio.get_running_loop():
            await found.stop()
        else:
            for task in [*found.tasks, found.telling, found.catching_up]:
                if task is not None:
                    task.cancel()
    _hubs.clear()
