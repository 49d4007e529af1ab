"""What every socket of the chat shares: its events come from this process's hub, and it follows its session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.urls import reverse

from chat import fragments, selectors
from chat.events import (
    ConversationJoined,
    ConversationLeft,
    ConversationNews,
    ConversationRead,
    Event,
    Fragment,
    NotificationLevelChanged,
    SessionEnded,
    ThreadNews,
    ThreadRead,
)
from chat.grants import GRANT_ACCESS_WITHDRAWN, GRANT_SESSION_ENDED, SocketGrant, socket_grant_revoked
from chat.groups import session_group
from chat.hub import hub
from chat.models import Membership, Message, Room, sidebar_group
from chat.selectors import notify_count
from chat.transport import Frame, Wire

# One logger for every socket, "chat.consumers" (README, "Logs").
logger = logging.getLogger(__package__)

CLOSE_UNAUTHENTICATED = GRANT_SESSION_ENDED
# Not a conversation this user may read (a private room they are not in, an unknown person): as if it did not exist.
CLOSE_NOT_FOUND = GRANT_ACCESS_WITHDRAWN
CLOSE_INVALID_ROOM = 4004

ACCESS_WITHDRAWN_ERROR = "This room is private now, and you are not one of its members: it is closed to you."

# This process's sockets, quiesced before a stopping server closes them (sockets_stop_taking_frames); and whether
# it is stopping.
_open_sockets: set[HubConsumer] = set()
_server_restarting = False


def socket_log_fields(scope: dict, *, room: str | None = None, **fields: object) -> dict[str, object]:
    """A socket log line's structured fields (README, "Logs"): who, where, why; never what anyone typed."""
    user = scope.get("user")
    return {
        "user": user.username if user is not None and user.is_authenticated else None,
        "path": scope.get("path"),
        "room": room,
        **fields,
    }


class HubConsumer(AsyncWebsocketConsumer):
    """A socket whose events come from this process's hub (chat.hub), not from a channel of its own.

    Channels' consumer reads a channel of its own beside the socket, with a task per event and a thread hop
    (close_old_connections) before each. Here the only input is the socket; the hub writes group events' frames
    straight to it, and calls `hub_event` for the few events a socket must act on. Handlers reach the database
    only through database_sync_to_async, which closes old connections itself.
    """

    groups: list[str] = []
    joined: list[str] = []
    restarting = False
    # Set when the session this socket was opened with has ended: from then on it neither sends nor takes anything.
    session_ended = False
    # Group events that came while the page's snapshot was being made (None: not making one).
    held: list[Event] | None = None
    # The sidebar as this page shows it: each entry's unread count, the entries flagged for a mention, and the
    # newest message its counts include. The conversation the page shows is not among them: it is being read.
    sidebar_unread: dict[int, int]
    sidebar_mentioned: set[int]
    sidebar_counted_up_to = 0
    # Each entry's level, and how many of its unread messages notify the user: the title's count is their sum.
    sidebar_levels: dict[int, str]
    notify_unread: dict[int, int]
    # The unread replies of each followed thread that has some (not the thread this page shows).
    threads_unread: dict[int, int]
    # The thread this page shows (a thread's page), else None.
    thread_id: int | None = None
    # The count the page's title shows (None: not sent by this socket yet).
    title_count: int | None = None
    showing_room_id: int | None = None
    # What the socket was opened with, checked before each write and in the hub's batches (chat.hub.recheck).
    grant: SocketGrant | None = None

    async def websocket_connect(self, message: dict) -> None:
        """Refused at the handshake while this process stops (1006): the browser tries again, by then on another
        process (a proxy passes it on at once)."""
        if server_restarting():
            await self.close()
            return
        await super().websocket_connect(message)

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = None
        self.base_send = send
        self.wire = Wire(send)
        self.user = scope.get("user")
        # The user's id as a plain int: read for every frame, and the scope's user is a lazy object.
        self.user_id = getattr(self.user, "pk", None)
        self.sidebar_unread, self.sidebar_mentioned = {}, set()
        self.sidebar_levels, self.notify_unread, self.threads_unread = {}, {}, {}
        # Held while a frame is handled, so that a restart closes the socket between frames, not during one.
        self.frame_in_hand = asyncio.Lock()
        # Held while a snapshot is made and sent: one that the layer's return asks for while the join's is being
        # made waits for it, and each replays the events held during its own.
        self.snapshotting = asyncio.Lock()
        _open_sockets.add(self)
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            _open_sockets.discard(self)
            # However the consumer ends (closed, crashed, cancelled by the server), it stops counting.
            await asyncio.shield(self.hub_leave())

    async def dispatch(self, message: dict) -> None:
        if self.session_ended and message["type"] != "websocket.disconnect":
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def hub_join(self, groups: list[str]) -> None:
        self.joined = [*self.joined, *groups]
        await hub().join(self, groups)

    async def sidebar_groups(self) -> list[str]:
        """The groups of the news of the user's conversations, but the one this page shows."""
        room_ids = await database_sync_to_async(selectors.sidebar_room_ids)(user=self.user)
        return [sidebar_group(room_id) for room_id in room_ids if room_id != self.showing_room_id]

    def page_title(self) -> str:
        """What the page's <title> calls it, after its count (each page's template's `title` block)."""
        raise NotImplementedError

    def sidebar_current(self) -> Room | None:
        """The conversation this page shows, marked in its sidebar."""
        return None

    def sidebar_thread(self) -> Message | None:
        """The thread this page shows, whose replies its sidebar does not count."""
        return None

    def sidebar_render(self) -> str:
        """The user's sidebar, whole, with the page's title; and the counts their news then adds to (call after
        joining its groups)."""
        sidebar = selectors.sidebar(user=self.user, current=self.sidebar_current(), thread=self.sidebar_thread())
        rooms = [room for room in [*sidebar.rooms, *sidebar.people] if room.pk != self.showing_room_id]
        self.sidebar_unread = {room.pk: room.unread_count for room in rooms}
        self.sidebar_mentioned = {room.pk for room in rooms if room.mentioned}
        self.sidebar_levels = {room.pk: room.level for room in rooms}
        self.notify_unread = {room.pk: room.notify_count for room in rooms}
        self.threads_unread = dict(sidebar.threads_unread)
        self.sidebar_counted_up_to = sidebar.counted_up_to
        # The direct conversations with a message: the only ones whose messages a room page shows as whispers.
        self.direct_room_ids = [room.pk for room in sidebar.people if room.last_message_at is not None]
        self.title_count = None
        return fragments.sidebar(sidebar=sidebar) + self.title_changed()

    def title_changed(self) -> str:
        """The page's title when its count changed since this socket last sent it, else nothing."""
        count = sum(self.notify_unread.values()) + sum(self.threads_unread.values())
        if count == self.title_count:
            return ""
        self.title_count = count
        return fragments.page_title(title=self.page_title(), count=count)

    async def send_snapshot(self, make: Callable[[], Awaitable[str]]) -> None:
        """Send what `make` returns (the page's state), then what the groups' events brought meanwhile, in order.

        Held until then: a frame sent before the snapshot would be replaced by it (an arrival lost from the list).
        One snapshot at a time: a second (the layer back while the join's is made) is made after the first.
        """
        async with self.snapshotting:
            self.held = []
            try:
                await self.send(text_data=await make())
            finally:
                held, self.held = self.held, None
                for event in held:
                    if isinstance(event, ThreadNews):
                        await self.thread_news(event)
                        continue
                    if isinstance(event, ConversationNews):
                        frames = self.sidebar_frames(event)
                    else:
                        frames = [frame] if (frame := self.frame_for(event)) is not None else []
                    for frame in frames:
                        await self.deliver(frame)

    def sidebar_frames(self, event: ConversationNews) -> list[Frame]:
        """A message in one of the user's other conversations: one more on its badge (rendered once per count), and
        on the title when it notifies them. Nothing for a muted one."""
        if self.held is not None:
            self.held.append(event)
            return []
        room_id = event.room_id
        count = self.sidebar_unread.get(room_id)
        if count is None or self.session_ended or event.message_id <= self.sidebar_counted_up_to:
            return []
        # Not news to its author, nor while the user has it open in another tab of this process.
        if event.author_id == self.user_id or hub().connections.get((room_id, self.user_id)):
            return []
        level = self.sidebar_levels.get(room_id)
        if level == Membership.Level.NOTHING:
            return []
        mentioned = self.user_id in event.mentioned
        if mentioned:
            self.sidebar_mentioned.add(room_id)
        self.sidebar_unread[room_id] = count + 1
        frames = [hub().sidebar_badges(room_id, count + 1, room_id in self.sidebar_mentioned)]
        if notify_count(level=level, unread=1, mentions=int(mentioned)):
            self.notify_unread[room_id] = self.notify_unread.get(room_id, 0) + 1
            frames.append(Frame(self.title_changed()))
        return frames

    async def hub_leave(self) -> None:
        """Leave the hub's groups, once."""
        joined, self.joined = self.joined, []
        if joined:
            await hub().leave(self, joined)

    async def hub_event(self, event: Event) -> None:
        """An event this socket acts on itself; the others pass it by."""
        if self.session_ended:
            return
        match event:
            case SessionEnded():
                await self.session_end(event)
            case ConversationJoined():
                await self.conversation_joined(event)
            case ConversationLeft():
                await self.conversation_left(event)
            case ConversationRead():
                await self.conversation_read(event)
            case NotificationLevelChanged():
                await self.notification_level_changed(event)
            case ThreadNews():
                await self.thread_news(event)
            case ThreadRead():
                await self.thread_read(event)

    def frame_for(self, event: Fragment) -> Frame | None:
        """The frame of a group event this socket shows, or None."""
        return None if self.session_ended else event.frame()

    async def session_end(self, event: SessionEnded) -> None:
        """The session of this socket ended (logout, password changed elsewhere, account deactivated): close it."""
        if event.keep_session == session_group(self.scope["session"]):
            return
        self.session_ended = True
        fields = socket_log_fields(self.scope, reason=event.reason, close_code=CLOSE_UNAUTHENTICATED)
        logger.info("socket closed: session ended", extra=fields)
        # The page says so, with a way back, before the socket closes (the browser does not reconnect after 4001).
        await self.send(text_data=fragments.connection(state="ended", next_path=self.page_path()))
        await self.close(code=CLOSE_UNAUTHENTICATED)

    def page_path(self) -> str:
        """The page this socket belongs to, to come back to after logging in again."""
        return reverse("chat:directory")

    def grant_make(self) -> None:
        """Remember what this socket was opened with: the session, the user, the conversation it shows."""
        session_key = self.scope["session"].session_key
        if session_key is not None and self.user_id is not None:
            self.grant = SocketGrant(session_key=session_key, user_id=self.user_id, room_id=self.showing_room_id)

    def grant_revoked(self) -> int | None:
        """The close code when this socket's session or access no longer holds (one query; the database thread)."""
        if self.grant is None:
            return GRANT_SESSION_ENDED
        return socket_grant_revoked(grant=self.grant)

    async def revoke(self, code: int) -> None:
        """The session or the access this socket was opened with no longer holds: close it, whatever was told."""
        if self.session_ended:
            return
        if code == GRANT_SESSION_ENDED:
            await self.session_end(SessionEnded(reason="session_invalid"))
        else:
            await self.access_withdrawn()

    async def access_withdrawn(self) -> None:
        """The user may no longer read what this page shows: nothing more reaches it, and it closes with 4003."""
        self.session_ended = True
        fields = socket_log_fields(self.scope, reason="not_member", close_code=CLOSE_NOT_FOUND)
        logger.info("socket closed: no access", extra=fields)
        await self.send(
            text_data=fragments.chat_error(error=ACCESS_WITHDRAWN_ERROR) + fragments.connection(state="closed")
        )
        await self.close(code=CLOSE_NOT_FOUND)

    async def conversation_joined(self, event: ConversationJoined) -> None:
        """The user is now in a conversation: show it, and hear its news (not on the page that shows it)."""
        room_id = event.room_id
        if room_id == self.showing_room_id:
            return
        if room_id not in self.sidebar_unread:
            self.sidebar_unread[room_id] = event.unread
            self.sidebar_levels[room_id] = event.level
            self.notify_unread[room_id] = notify_count(level=event.level, unread=event.unread, mentions=0)
            await self.hub_join([sidebar_group(room_id)])
        await self.send(text_data=event.html + self.title_changed())

    async def conversation_left(self, event: ConversationLeft) -> None:
        room_id = event.room_id
        if self.sidebar_unread.pop(room_id, None) is not None:
            self.sidebar_mentioned.discard(room_id)
            self.sidebar_levels.pop(room_id, None)
            self.notify_unread.pop(room_id, None)
            group = sidebar_group(room_id)
            self.joined = [joined for joined in self.joined if joined != group]
            await hub().leave(self, [group])
        # Also on a page that still shows the room: the user has left it, wherever they did.
        await self.send(text_data=event.html + self.title_changed())

    async def conversation_read(self, event: ConversationRead) -> None:
        """The user opened the conversation elsewhere: its badge and its share of the title go."""
        room_id = event.room_id
        if not self.sidebar_unread.get(room_id) and room_id not in self.sidebar_mentioned:
            return
        self.sidebar_unread[room_id] = 0
        self.sidebar_mentioned.discard(room_id)
        self.notify_unread[room_id] = 0
        await self.deliver(hub().sidebar_badges(room_id, 0, False))
        if title := self.title_changed():
            await self.send(text_data=title)

    async def thread_news(self, event: ThreadNews) -> None:
        """A reply in a thread the user follows: one more unread on the sidebar's Threads and the title, unless they
        wrote it, this page shows that thread, or its conversation is muted."""
        if self.held is not None:
            self.held.append(event)
            return
        muted = self.sidebar_levels.get(event.room_id) == Membership.Level.NOTHING
        if event.author_id == self.user_id or event.thread_id == self.thread_id or muted:
            return
        if event.message_id <= self.sidebar_counted_up_to:
            return
        self.threads_unread[event.thread_id] = self.threads_unread.get(event.thread_id, 0) + 1
        await self.threads_unread_send()

    async def thread_read(self, event: ThreadRead) -> None:
        if self.threads_unread.pop(event.thread_id, None):
            await self.threads_unread_send()

    async def threads_unread_send(self) -> None:
        unread = sum(self.threads_unread.values())
        await self.send(text_data=fragments.sidebar_threads(unread=unread) + self.title_changed())

    async def notification_level_changed(self, event: NotificationLevelChanged) -> None:
        """The user changed what a conversation notifies them of: the sidebar and the title, counted again."""
        await self.send_snapshot(database_sync_to_async(self.sidebar_render))

    async def deliver(self, frame: Frame) -> None:
        try:
            await self.wire.write(frame)
        except Exception:  # the socket closed under us (the server's error type): its disconnect follows
            logger.debug("frame to a closed socket dropped", extra=socket_log_fields(self.scope))

    async def websocket_disconnect(self, message: dict) -> None:
        await self.disconnect(message["code"])
        raise StopConsumer

    async def stop_taking_frames(self) -> None:
        """The server is stopping: take no more frames."""
        self.restarting = True


def server_restarting() -> bool:
    """Whether this process is stopping (a socket opening now is refused, to be retried elsewhere)."""
    return _server_restarting


def sockets_open() -> int:
    """How many sockets this process still has open."""
    return len(_open_sockets)


async def sockets_stop_taking_frames() -> None:
    """Before the server closes the sockets (config/server.py): let each finish its frame in hand, refuse new ones."""
    global _server_restarting
    _server_restarting = True
    await asyncio.gather(*(consumer.stop_taking_frames() for consumer in list(_open_sockets)))
