"""The room socket: parse, call a service or selector, send. The rules live in chat.services."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from chat import fragments, selectors, services
from chat.hub import CachedLog, frame_of, hub
from chat.models import Room, sidebar_group
from chat.transport import Frame, Wire

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4001
# Not a conversation this user may read (a private room they are not in, an unknown person): as if it did not exist.
CLOSE_NOT_FOUND = 4003
CLOSE_INVALID_ROOM = 4004


def socket_log_fields(scope: dict, *, room: str | None = None, **fields: object) -> dict[str, object]:
    """A socket log line's structured fields (README, "Logs"): who, where, why; never what anyone typed."""
    user = scope.get("user")
    return {
        "user": user.username if user is not None and user.is_authenticated else None,
        "path": scope.get("path"),
        "room": room,
        **fields,
    }


# The browser sends typing notices at most every 2 s; the server forwards at most one a second, below the
# browser's period, so that it never drops a notice the browser's throttle let through (a flood it does drop).
TYPING_THROTTLE_SECONDS = 1.0

# Refusals no person at a browser causes (the form caps the length) or that mean a flood: logged as warnings.
WARNING_REASONS = frozenset({"too_long", "rate_limited"})

# This process's sockets, quiesced before a stopping server closes them (config/server.py); and whether it is.
open_sockets: set[HubConsumer] = set()
server_restarting = False

LAYER_LOST_ERROR = (
    "Live updates are interrupted. What you send is still saved, and this page catches up by itself "
    "when the connection is back."
)


NOT_A_MEMBER_ERROR = "This room is private now, and you are not one of its members: it is closed to you."


def readable(value: object) -> bool:
    """A string of real characters: JSON can also carry lone surrogates ("\\ud800"), which no database stores."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


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
    held: list[dict] | None = None
    # The sidebar as this page shows it: each entry's unread count, the entries flagged for a mention, and the
    # newest message its counts include. The conversation the page shows is not among them: it is being read.
    sidebar_unread: dict[int, int]
    sidebar_mentioned: set[int]
    sidebar_counted_up_to = 0
    showing_room_id: int | None = None

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
        # Held while a frame is handled, so that a restart closes the socket between frames, not during one.
        self.frame_in_hand = asyncio.Lock()
        open_sockets.add(self)
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            open_sockets.discard(self)
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

    def sidebar_render(self, current: Room | None) -> str:
        """The user's sidebar, whole, and the counts that its news then adds to (call after joining its groups)."""
        sidebar = selectors.sidebar(user=self.user, current=current)
        self.sidebar_unread = {room.pk: room.unread_count for room in [*sidebar.rooms, *sidebar.people]}
        self.sidebar_unread.pop(self.showing_room_id, None)
        self.sidebar_mentioned = {room.pk for room in [*sidebar.rooms, *sidebar.people] if room.mentioned}
        self.sidebar_counted_up_to = sidebar.counted_up_to
        return fragments.sidebar(sidebar=sidebar)

    async def send_snapshot(self, make: Callable[[], Awaitable[str]]) -> None:
        """Send what `make` returns (the page's state), then what the groups' events brought meanwhile, in order.

        Held until then: a frame sent before the snapshot would be replaced by it (an arrival lost from the list).
        """
        self.held = []
        try:
            await self.send(text_data=await make())
        finally:
            held, self.held = self.held, None
            for event in held:
                frame = self.sidebar_frame(event) if event["type"] == "sidebar.news" else self.frame_for(event)
                if frame is not None:
                    await self.deliver(frame)

    def sidebar_frame(self, event: dict) -> Frame | None:
        """A message in one of the user's other conversations: one more on its badge, rendered once per count."""
        if self.held is not None:
            self.held.append(event)
            return None
        room_id = event["room_id"]
        count = self.sidebar_unread.get(room_id)
        if count is None or self.session_ended or event["message_id"] <= self.sidebar_counted_up_to:
            return None
        # Not news to its author, nor while the user has it open in another tab of this process.
        if event["author_id"] == self.user_id or hub().connections.get((room_id, self.user_id)):
            return None
        mentioned = self.user_id in event["mentioned"]
        if mentioned:
            self.sidebar_mentioned.add(room_id)
        self.sidebar_unread[room_id] = count + 1
        return hub().sidebar_badges(room_id, count + 1, room_id in self.sidebar_mentioned)

    async def sidebar_joined(self, event: dict) -> None:
        """The user is now in a conversation: show it, and hear its news (not on the page that shows it)."""
        room_id = event["room_id"]
        if room_id == self.showing_room_id:
            return
        if room_id not in self.sidebar_unread:
            self.sidebar_unread[room_id] = event["unread"]
            await self.hub_join([event["sidebar_group"]])
        await self.send(text_data=event["html"])

    async def sidebar_left(self, event: dict) -> None:
        room_id = event["room_id"]
        if self.sidebar_unread.pop(room_id, None) is not None:
            group = sidebar_group(room_id)
            self.joined = [joined for joined in self.joined if joined != group]
            await hub().leave(self, [group])
        # Also on a page that still shows the room: the user has left it, wherever they did.
        await self.send(text_data=event["html"])

    async def hub_leave(self) -> None:
        """Leave the hub's groups, once."""
        joined, self.joined = self.joined, []
        if joined:
            await hub().leave(self, joined)

    async def hub_event(self, event: dict) -> None:
        """An event this socket acts on itself (room.status, session.end, ...); others have no handler here."""
        handler = getattr(self, get_handler_name(event), None)
        if handler is not None and not self.session_ended:
            await handler(event)

    def frame_for(self, event: dict) -> Frame | None:
        """The frame of a group event this socket shows, or None."""
        return None if self.session_ended else frame_of(event)

    async def session_end(self, event: dict) -> None:
        """The session of this socket ended (logout, password changed elsewhere, account deactivated): close it."""
        if event.get("keep_session") == services.session_group(self.scope["session"]):
            return
        self.session_ended = True
        fields = socket_log_fields(self.scope, reason=event["reason"], close_code=CLOSE_UNAUTHENTICATED)
        logger.info("socket closed: session ended", extra=fields)
        await self.close(code=CLOSE_UNAUTHENTICATED)

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


class ChatRoomConsumer(HubConsumer):
    """One browser tab with one room open."""

    room: Room | None = None
    typing_sent_at = float("-inf")
    present = False
    layer_up = True
    log_last_id = 0

    async def layer_lost(self, event: dict) -> None:
        """The channel layer stopped answering: say so once; messages are still stored, only not delivered live."""
        if not self.layer_up or self.room is None:
            return
        self.layer_up = False
        logger.warning("channel layer unavailable", extra=socket_log_fields(self.scope, room=self.room.name))
        await self.send(text_data=fragments.chat_error(error=LAYER_LOST_ERROR))

    async def layer_back(self, event: dict) -> None:
        """The layer answers again and the groups are joined: send what this page missed meanwhile."""
        self.layer_up = True
        if self.room is not None:
            await self.send_snapshot(partial(self.room_snapshot, extra=fragments.chat_error()))
            logger.info("channel layer back", extra=socket_log_fields(self.scope, room=self.room.name))

    async def stop_taking_frames(self) -> None:
        """The server is stopping: finish the frame in hand (stored and answered), then take no more."""
        async with self.frame_in_hand:
            self.restarting = True

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Exception:  # the server's error type for a closing socket
            if not self.restarting:
                raise
            # The server is closing this socket for a restart: the browser gets the state again on reconnect.

    async def websocket_receive(self, message: dict) -> None:
        async with self.frame_in_hand:
            # The server is stopping (checked in the lock: a frame may have waited for it behind the restart):
            # the text stays in the browser's box and is sent again after reconnecting.
            if self.restarting:
                return
            await super().websocket_receive(message)

    async def connect(self) -> None:
        """Join the conversation's and the user's groups, count the connection, send the log, the online list and
        the sidebar."""
        conversation = self.scope["url_route"]["kwargs"]  # {"room_name": ...} or {"username": ...}
        name = next(iter(conversation.values()))
        if server_restarting:
            # Refused at the handshake (1006): the browser tries again, by then on another process.
            await self.close()
            return
        # Accept before refusing: a refused handshake looks like 1006, which the browser retries forever.
        await self.accept()
        if not self.user.is_authenticated:
            logger.info(
                "socket refused",
                extra=socket_log_fields(
                    self.scope, room=name[:60], reason="anonymous", close_code=CLOSE_UNAUTHENTICATED
                ),
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            self.room = await database_sync_to_async(services.conversation_open)(user=self.user, **conversation)
        except services.ChatError as error:
            code = CLOSE_INVALID_ROOM if isinstance(error, services.InvalidRoomName) else CLOSE_NOT_FOUND
            logger.info(
                "socket refused",
                extra=socket_log_fields(self.scope, room=name[:60], reason=error.reason, close_code=code),
            )
            await self.send(text_data=fragments.chat_error(error=str(error)))
            await self.close(code=code)
            return
        self.showing_room_id = self.room.pk
        self.state = hub().room(self.room)
        # Joined before the log is read, so that no message falls between the two.
        groups = [
            self.room.group_name,
            services.user_group(self.user.pk),
            services.session_group(self.scope["session"]),
            *await self.sidebar_groups(),
        ]
        await self.hub_join(groups)
        if not hub().up:
            await self.layer_lost({})
        self.present = True
        await hub().presence_join(self.room, self.user)
        # The room's status too: a moderator may have closed the room while this page was away.
        await self.send_snapshot(self.room_snapshot)
        logger.info("socket connected", extra=socket_log_fields(self.scope, room=self.room.name))

    async def room_snapshot(self, extra: str | None = None) -> str:
        """The log, the online list and the sidebar as this page should show them now, mostly from what the room's
        sockets share; and the room's status (`extra`: what else to send with them)."""
        state = self.state
        online_html = await hub().room_online(state)
        version = state.log_version
        cached = state.log if state.log is not None and state.log.version == version else None
        log_html, self.log_last_id, fresh = await database_sync_to_async(self.log_render)(cached, version)
        if fresh is not None and state.log_version == version:
            state.log = fresh
        status = fragments.room_status(room=self.room) if extra is None else extra
        return log_html + online_html + status

    def log_render(self, cached: CachedLog | None, version: int) -> tuple[str, int, CachedLog | None]:
        """This page's log and sidebar: the room's shared log, unless whispers or an unread divider make it its own."""
        # Read again now that the groups are joined: a room closed since it was loaded is not missed.
        self.room.refresh_from_db(fields=["read_only"])
        fresh = None
        if cached is None:
            room_messages = selectors.room_messages_recent(room=self.room)
            html = fragments.message_log(room=self.room, messages=room_messages)
            cached = fresh = CachedLog(version=version, messages=room_messages, html=html)
        latest_id = cached.messages[-1].pk if cached.messages else 0
        last_read_id = services.conversation_mark_read(room=self.room, user=self.user, latest_id=latest_id, join=True)
        sidebar_html = self.sidebar_render(current=self.room)
        # A room page shows the user's direct messages among the room's, as whispers.
        private = [] if self.room.is_direct else selectors.private_messages_recent(user=self.user)
        messages = selectors.messages_merged(cached.messages, private)
        # Live messages already in this log are not forwarded again (a message may land in between).
        last_id = messages[-1].pk if messages else 0
        divider_id = selectors.unread_divider_id(messages=messages, last_read_id=last_read_id, user=self.user)
        if divider_id is None and not private:
            return cached.html + sidebar_html, last_id, fresh
        log_html = fragments.message_log(room=self.room, messages=messages, divider_id=divider_id)
        return log_html + sidebar_html, last_id, fresh

    async def hub_leave(self) -> None:
        """Uncount this connection and leave the groups, once; everything shown meanwhile has been read."""
        if self.present:
            self.present = False
            await hub().presence_leave(self.room, self.user)
            await super().hub_leave()
            await database_sync_to_async(services.conversation_mark_read)(room=self.room, user=self.user)
        else:
            await super().hub_leave()

    async def disconnect(self, code: int) -> None:
        """Uncount the connection and log it."""
        if self.room is None:
            return
        await self.hub_leave()
        logger.info("socket disconnected", extra=socket_log_fields(self.scope, room=self.room.name, close_code=code))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Take one frame of the message form, as the htmx ws extension sends it."""
        if self.room is None:
            return
        payload = self.frame_payload(text_data)
        if readable(payload.get("message")):
            await self.post_message(payload["message"])
        elif payload.get("typing"):
            await self.announce_typing()
        else:
            logger.warning(
                "frame rejected", extra=socket_log_fields(self.scope, room=self.room.name, reason="malformed")
            )
            await self.send_error("That message could not be read. Please type it again.")

    async def post_message(self, text: str) -> None:
        """Store and publish what the form sent; answer the sender with a fresh form or an error."""
        try:
            await database_sync_to_async(services.message_post)(room=self.room, author=self.user, text=text)
        except services.DeliveryError as error:
            logger.warning(
                "message not delivered live",
                extra=socket_log_fields(self.scope, room=self.room.name, reason=error.reason),
            )
            await self.send(text_data=fragments.chat_error(error=str(error)) + fragments.message_form(room=self.room))
        except services.ChatError as error:
            # The reason code, not the sentence: the sentence can quote what the user typed.
            level = logging.WARNING if error.reason in WARNING_REASONS else logging.INFO
            logger.log(
                level, "message refused", extra=socket_log_fields(self.scope, room=self.room.name, reason=error.reason)
            )
            # A browser's frame holds at most 64 KiB; longer text came in fragments from a script, and sending it
            # back whole could make a frame larger than daphne will send (it would close the socket with 1011).
            await self.send_error(str(error), draft=text[:65536])
        else:
            # The message removed this user's notice; the next keystroke may announce typing again at once.
            self.typing_sent_at = float("-inf")
            await self.send(text_data=fragments.chat_error() + fragments.message_form(room=self.room))

    async def announce_typing(self) -> None:
        """Tell the others in the room that this user is typing: throttled, nothing stored."""
        now = time.monotonic()
        if now - self.typing_sent_at < TYPING_THROTTLE_SECONDS:
            return
        self.typing_sent_at = now
        html = fragments.typing(typist=self.user)
        event = {"type": "chat.fragment", "html": html, "skip_user_id": self.user.pk, "transient": True}
        if hub().up:
            try:
                await hub().publish(self.room.group_name, event)
            except Exception as error:  # a notice nobody misses; the layer's own state is the hub's
                logger.debug("typing notice dropped: %s", type(error).__name__)

    @staticmethod
    def frame_payload(text_data: str | None) -> dict:
        """The JSON object of a text frame, or {} when the frame is not one."""
        try:
            payload = json.loads(text_data) if text_data is not None else None
        except ValueError:
            return {}
        return payload if isinstance(payload, dict) else {}

    async def send_error(self, error: str, draft: str = "") -> None:
        """Show the error above the form and keep what the user typed."""
        await self.send(
            text_data=fragments.chat_error(error=error) + fragments.message_form(room=self.room, draft=draft)
        )

    async def room_status(self, event: dict) -> None:
        """A moderator closed or opened the room: post accordingly, and show it."""
        self.room.read_only = event["read_only"]
        await self.send(text_data=event["html"])

    async def room_access(self, event: dict) -> None:
        """Who may read the room changed (made private, a member left or was removed): a reader no longer among
        them is closed out, as if the room did not exist."""
        if event["members_only"] and self.user_id not in event["member_ids"]:
            self.session_ended = True  # nothing more reaches this page
            fields = socket_log_fields(
                self.scope, room=self.room.name, reason="not_member", close_code=CLOSE_NOT_FOUND
            )
            logger.info("socket closed: not a member", extra=fields)
            await self.send(text_data=fragments.chat_error(error=NOT_A_MEMBER_ERROR))
            await self.close(code=CLOSE_NOT_FOUND)

    def frame_for(self, event: dict) -> Frame | None:
        """HTML rendered once for the whole group; not a message already in this log, not to a typist."""
        if self.held is not None:  # the page's log and online list are not out yet: they come first
            self.held.append(event)
            return None
        message_id = event.get("message_id")
        if self.session_ended or (message_id is not None and message_id <= self.log_last_id):
            return None
        # A typist's own notice; a whisper of the direct conversation this page shows (it has the message itself).
        if event.get("skip_user_id") == self.user_id or event.get("whisper_room_id") == self.showing_room_id:
            return None
        return frame_of(event)


class RoomDirectoryConsumer(HubConsumer):
    """The room directory page: online counts, last activity and new rooms, live; and the sidebar."""

    listed_up_to = 0

    async def connect(self) -> None:
        """Join the directory's groups and send this page of the list and the sidebar again (it may have been away)."""
        await self.accept()
        if not self.user.is_authenticated:
            logger.info(
                "socket refused",
                extra=socket_log_fields(self.scope, reason="anonymous", close_code=CLOSE_UNAUTHENTICATED),
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # The page's own query (the socket's URL carries it): the list it shows, and whether new rooms go on it.
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        self.page, self.query = query.get("page", ["1"])[0], query.get("q", [""])[0].strip()[:50]
        groups = [
            services.DIRECTORY_GROUP,
            services.directory_user_group(self.user.pk),
            services.session_group(self.scope["session"]),
            *await self.sidebar_groups(),
        ]
        await self.hub_join(groups)
        await self.send_snapshot(database_sync_to_async(self.room_list))
        logger.info("socket connected", extra=socket_log_fields(self.scope))

    def room_list(self) -> str:
        """This page of the list and the sidebar; the newest message id the list counts (news up to it is in it)."""
        self.listed_up_to = selectors.message_latest_id()
        list_html = fragments.directory_room_list(user=self.user, query=self.query, page=self.page)
        return list_html + self.sidebar_render(current=None)

    async def disconnect(self, code: int) -> None:
        await self.hub_leave()
        if self.user.is_authenticated:
            logger.info("socket disconnected", extra=socket_log_fields(self.scope, close_code=code))

    def frame_for(self, event: dict) -> Frame | None:
        """HTML rendered once for every directory, with an unread mark per message this user did not write."""
        if self.held is not None:  # the page's list is not out yet: it comes first
            self.held.append(event)
            return None
        if self.session_ended:
            return None
        if event.get("room_added") and (self.query or self.page != "1"):  # new rooms go on top of the first page
            return None
        if "news_html" not in event:
            return frame_of(event)
        if event["first_id"] > self.listed_up_to:  # the usual case: one count for every directory of this user
            return frame_of(event, news=event["news_count"] - dict(event["authors"]).get(self.user_id, 0))
        # Listed since the first of these messages: its list already counts those (or its user saw them).
        later = sum(1 for pk, author in event["messages"] if pk > self.listed_up_to and author != self.user_id)
        return frame_of(event, news=later)


async def sockets_stop_taking_frames() -> None:
    """Before the server closes the sockets (config/server.py): let each finish its frame in hand, refuse new ones."""
    global server_restarting
    server_restarting = True
    await asyncio.gather(*(consumer.stop_taking_frames() for consumer in list(open_sockets)))
