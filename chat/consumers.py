"""The room socket: parse, call a service or selector, send. The rules live in chat.services."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from chat import fragments, selectors, services
from chat.hub import CachedLog, frame_of, hub
from chat.models import Room
from chat.transport import Frame, Wire

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4001
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

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = None
        self.base_send = send
        self.wire = Wire(send)
        self.user = scope.get("user")
        # The user's id as a plain int: read for every frame, and the scope's user is a lazy object.
        self.user_id = getattr(self.user, "pk", None)
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
        self.joined = groups
        await hub().join(self, groups)

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
    # Group events that came while the page's snapshot was being made (None: not making one).
    held: list[dict] | None = None

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
            await self.send_snapshot(extra=fragments.chat_error())
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
        """Join the room's and the user's groups, count the connection, send the log and the online list."""
        name = self.scope["url_route"]["kwargs"]["room_name"]
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
            self.room = await database_sync_to_async(services.room_get_or_create)(name=name)
        except services.InvalidRoomName as error:
            logger.info(
                "socket refused",
                extra=socket_log_fields(
                    self.scope, room=name[:60], reason=error.reason, close_code=CLOSE_INVALID_ROOM
                ),
            )
            await self.send(text_data=fragments.chat_error(error=str(error)))
            await self.close(code=CLOSE_INVALID_ROOM)
            return
        self.state = hub().room(self.room)
        # Joined before the log is read, so that no message falls between the two.
        groups = [
            self.room.group_name,
            services.user_group(self.user.pk),
            services.session_group(self.scope["session"]),
        ]
        await self.hub_join(groups)
        if not hub().up:
            await self.layer_lost({})
        self.present = True
        await hub().presence_join(self.room, self.user)
        # The room's status too: a moderator may have closed the room while this page was away.
        await self.send_snapshot(extra=fragments.room_status(room=self.room))
        logger.info("socket connected", extra=socket_log_fields(self.scope, room=self.room.name))

    async def send_snapshot(self, *, extra: str) -> None:
        """Send the log and the online list, then what the room's events brought meanwhile, in their order.

        Held until then: a frame sent before the snapshot would be replaced by it (an arrival lost from the list).
        """
        self.held = []
        try:
            await self.send(text_data=await self.room_snapshot() + extra)
        finally:
            held, self.held = self.held, None
            for event in held:
                frame = self.frame_for(event)
                if frame is not None:
                    await self.deliver(frame)

    async def room_snapshot(self) -> str:
        """The log and the online list as this page should show them now, mostly from what the room's sockets share."""
        state = self.state
        online_html = await hub().room_online(state)
        version = state.log_version
        cached = state.log if state.log is not None and state.log.version == version else None
        log_html, self.log_last_id, fresh = await database_sync_to_async(self.log_render)(cached, version)
        if fresh is not None and state.log_version == version:
            state.log = fresh
        return log_html + online_html

    def log_render(self, cached: CachedLog | None, version: int) -> tuple[str, int, CachedLog | None]:
        """This page's log: the room's shared one, unless private messages or an unread divider make it its own."""
        # Read again now that the groups are joined: a room closed since it was loaded is not missed.
        self.room.refresh_from_db(fields=["read_only"])
        fresh = None
        if cached is None:
            room_messages = selectors.room_messages_recent(room=self.room)
            html = fragments.message_log(room=self.room, messages=room_messages)
            cached = fresh = CachedLog(version=version, messages=room_messages, html=html)
        latest_id = cached.messages[-1].pk if cached.messages else 0
        last_read_id = services.room_mark_read(room=self.room, user=self.user, latest_id=latest_id)
        private = selectors.private_messages_recent(user=self.user)
        messages = selectors.messages_merged(cached.messages, private)
        # Live messages already in this log are not forwarded again (a message may land in between).
        last_id = messages[-1].pk if messages else 0
        divider_id = selectors.unread_divider_id(messages=messages, last_read_id=last_read_id, user=self.user)
        if divider_id is None and not any(message.is_private for message in messages):
            return cached.html, last_id, fresh
        return fragments.message_log(room=self.room, messages=messages, divider_id=divider_id), last_id, fresh

    async def hub_leave(self) -> None:
        """Uncount this connection and leave the groups, once; everything shown meanwhile has been read."""
        if self.present:
            self.present = False
            await hub().presence_leave(self.room, self.user)
            await super().hub_leave()
            await database_sync_to_async(services.room_mark_read)(room=self.room, user=self.user)
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

    def frame_for(self, event: dict) -> Frame | None:
        """HTML rendered once for the whole group; not a message already in this log, not to a typist."""
        if self.held is not None:  # the page's log and online list are not out yet: they come first
            self.held.append(event)
            return None
        message_id = event.get("message_id")
        if self.session_ended or (message_id is not None and message_id <= self.log_last_id):
            return None
        if event.get("skip_user_id") == self.user_id:
            return None
        return frame_of(event)


class RoomDirectoryConsumer(HubConsumer):
    """The room directory page: online counts, last activity and new rooms, live."""

    listed_up_to = 0

    async def connect(self) -> None:
        """Join the directory group and send the whole list again (the page may have been away)."""
        await self.accept()
        if not self.user.is_authenticated:
            logger.info(
                "socket refused",
                extra=socket_log_fields(self.scope, reason="anonymous", close_code=CLOSE_UNAUTHENTICATED),
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        groups = [
            services.DIRECTORY_GROUP,
            services.directory_user_group(self.user.pk),
            services.session_group(self.scope["session"]),
        ]
        await self.hub_join(groups)
        self.listed_up_to, html = await database_sync_to_async(self.room_list)()
        await self.send(text_data=html)
        logger.info("socket connected", extra=socket_log_fields(self.scope))

    def room_list(self) -> tuple[int, str]:
        """The newest message id the list counts (news up to it is already in it), and the list."""
        return selectors.message_latest_id(), fragments.directory_room_list(user=self.user)

    async def disconnect(self, code: int) -> None:
        await self.hub_leave()
        if self.user.is_authenticated:
            logger.info("socket disconnected", extra=socket_log_fields(self.scope, close_code=code))

    def frame_for(self, event: dict) -> Frame | None:
        """HTML rendered once for every directory, with an unread mark per message this user did not write."""
        if self.session_ended:
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
