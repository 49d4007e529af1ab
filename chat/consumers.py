"""The room socket: parse, call a service or selector, send. The rules live in chat.services."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from chat import fragments, selectors, services
from chat.models import Room

logger = logging.getLogger(__name__)

# Identifies this server process in the presence table, so a dead process's rows can expire.
SERVER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

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


# The channel names of this process's sockets that are counted as present; the heartbeat
# refreshes exactly these, so the rows of a consumer that ended without leaving expire.
live_channels: set[str] = set()

# The browser sends typing notices at most every 2 s; the server forwards at most one a second, below the
# browser's period, so that it never drops a notice the browser's throttle let through (a flood it does drop).
TYPING_THROTTLE_SECONDS = 1.0

# Refusals no person at a browser causes (the form caps the length) or that mean a flood: logged as warnings.
WARNING_REASONS = frozenset({"too_long", "rate_limited"})

# This process's room sockets, quiesced before a stopping server closes them (config/server.py); and whether it is.
open_sockets: set[ChatRoomConsumer] = set()
server_restarting = False

# While the channel layer does not answer, each socket tries to join its groups again this often (seconds).
LAYER_RETRY_SECONDS = 2.0
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


class ForwardingConsumer(AsyncWebsocketConsumer):
    """A socket consumer whose events reach their handlers without a thread hop per event.

    Channels' dispatch runs close_old_connections on its one sync thread before every event, so a
    group message cost each recipient a trip through that thread, one recipient at a time: about a
    fifth of the server's CPU per delivered frame under fan-out (docs/performance.md). Our handlers
    reach the database only through database_sync_to_async, which closes old connections itself.
    """

    # Set when the session this socket was opened with has ended: from then on it neither sends nor takes anything.
    session_ended = False

    async def dispatch(self, message: dict) -> None:
        if self.session_ended and message["type"] != "websocket.disconnect":
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def session_end(self, event: dict) -> None:
        """The session of this socket ended (logout, password changed elsewhere, account deactivated): close it."""
        if event.get("keep_session") == services.session_group(self.scope["session"]):
            return
        self.session_ended = True
        fields = socket_log_fields(self.scope, reason=event["reason"], close_code=CLOSE_UNAUTHENTICATED)
        logger.info("socket closed: session ended", extra=fields)
        await self.close(code=CLOSE_UNAUTHENTICATED)


class ChatRoomConsumer(ForwardingConsumer):
    """One browser tab with one room open."""

    room: Room | None = None
    typing_sent_at = float("-inf")
    present = False
    layer_up = True
    restarting = False

    async def __call__(self, scope, receive, send) -> None:
        """Serve the socket as channels' AsyncConsumer does, but read the layer through layer_events."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        # Held while a frame is handled, so that a restart closes the socket between frames, not during one.
        self.frame_in_hand = asyncio.Lock()
        open_sockets.add(self)
        try:
            await await_many_dispatch([receive, self.layer_events], self.dispatch)
        except StopConsumer:
            pass
        finally:
            open_sockets.discard(self)
            # However the consumer ends (closed, crashed, cancelled by the server), it stops counting.
            if self.present:
                await asyncio.shield(self.leave())

    async def layer_events(self) -> dict:
        """The next channel-layer event; an outage becomes `layer.lost`, and joining the groups after it `layer.back`.

        Channels lets a layer error end the consumer (the browser sees 1011 and reconnects into the same outage);
        here the socket stays open: the page keeps its log, and what the user sends is stored (services).
        """
        if self.layer_up:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except Exception as error:  # the layer's errors depend on its backend (Redis, in-memory)
                return {"type": "layer.lost", "reason": type(error).__name__}
        while True:
            await asyncio.sleep(LAYER_RETRY_SECONDS)
            try:
                for group in self.groups:
                    await self.channel_layer.group_add(group, self.channel_name)
            except Exception:  # still down
                continue
            return {"type": "layer.back"}

    async def layer_lost(self, event: dict) -> None:
        """The channel layer stopped answering: say so once; messages are still stored, only not delivered live."""
        if not self.layer_up:
            return
        self.layer_up = False
        if self.room is not None:
            fields = socket_log_fields(self.scope, room=self.room.name, reason=event["reason"])
            logger.warning("channel layer unavailable", extra=fields)
            await self.send(text_data=fragments.chat_error(error=LAYER_LOST_ERROR))

    async def layer_back(self, event: dict) -> None:
        """The layer answers again and the groups are joined: send what this page missed meanwhile."""
        self.layer_up = True
        if self.room is not None:
            log = await database_sync_to_async(self.join_and_render_log)()
            await self.send(text_data=log + fragments.chat_error())
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
        if self.restarting:  # the server is stopping: the text stays in the browser's box, sent after reconnecting
            return
        async with self.frame_in_hand:
            await super().websocket_receive(message)

    async def websocket_disconnect(self, message: dict) -> None:
        """Leave the groups while the layer answers (its memberships expire anyway), then uncount."""
        if self.layer_up:
            try:
                for group in self.groups:
                    await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as error:  # the layer's errors depend on its backend
                logger.warning("groups not left", extra=socket_log_fields(self.scope, reason=type(error).__name__))
        await self.disconnect(message["code"])
        raise StopConsumer

    async def connect(self) -> None:
        """Join the room's and the user's groups, count the connection, send the log."""
        self.user = self.scope["user"]
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
        self.groups = [
            self.room.group_name,
            services.user_group(self.user.pk),
            services.session_group(self.scope["session"]),
        ]
        try:
            for group in self.groups:
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception as error:  # the layer's errors depend on its backend; the page works without it
            await self.layer_lost({"reason": type(error).__name__})
        log = await database_sync_to_async(self.join_and_render_log)()
        # The room's status too: a moderator may have closed the room while this page was away.
        await self.send(text_data=log + fragments.room_status(room=self.room))
        presence_heartbeat_ensure(self.channel_layer)
        logger.info("socket connected", extra=socket_log_fields(self.scope, room=self.room.name))

    async def leave(self) -> None:
        """Uncount this connection, once."""
        self.present = False
        live_channels.discard(self.channel_name)
        await database_sync_to_async(self.leave_and_mark_read)()

    def leave_and_mark_read(self) -> None:
        services.presence_leave(channel_name=self.channel_name)
        # Everything shown while the socket was open has been read.
        services.room_mark_read(room=self.room, user=self.user)

    def join_and_render_log(self) -> str:
        """Count this connection and render its log and online list (returned, not kept: tens of KiB a socket)."""
        # Read again now that the groups are joined: a room closed since it was loaded is not missed.
        self.room.refresh_from_db(fields=["read_only"])
        self.present = True
        live_channels.add(self.channel_name)
        services.presence_join(room=self.room, user=self.user, channel_name=self.channel_name, server=SERVER_ID)
        messages = selectors.message_list_recent(room=self.room, user=self.user)
        # Live messages already in this log are not forwarded again (a message may land in between).
        self.log_last_id = messages[-1].pk if messages else 0
        last_read_id = services.room_mark_read(room=self.room, user=self.user)
        divider_id = selectors.unread_divider_id(messages=messages, last_read_id=last_read_id, user=self.user)
        online = fragments.online_users(room=self.room, users=selectors.room_online_users(room=self.room))
        return fragments.message_log(room=self.room, messages=messages, divider_id=divider_id) + online

    async def disconnect(self, code: int) -> None:
        """Leave the groups and uncount the connection."""
        if self.room is None:
            return
        # The base class has already left self.groups.
        if self.present:
            await self.leave()
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
        event = {"type": "chat.fragment", "html": html, "skip_user_id": self.user.pk}
        if self.layer_up:
            try:
                await self.channel_layer.group_send(self.room.group_name, event)
            except Exception as error:  # a notice nobody misses; the layer's own state is handled in layer_events
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

    async def chat_fragment(self, event: dict) -> None:
        """Forward HTML rendered once for the whole group (not a message already in this log, not to a typist)."""
        if event.get("message_id", self.log_last_id + 1) <= self.log_last_id:
            return
        if event.get("skip_user_id") == self.user.pk or event.get("skip_channel") == self.channel_name:
            return
        try:
            await self.send(text_data=event["html"])
        except Exception:  # the socket closed under us (the server's error type): its disconnect follows
            logger.debug("forward to a closed socket dropped: user=%s", self.user.username)


class RoomDirectoryConsumer(ForwardingConsumer):
    """The room directory page: online counts, last activity and new rooms, live."""

    async def connect(self) -> None:
        """Join the directory group and send the whole list again (the page may have been away)."""
        await self.accept()
        if not self.scope["user"].is_authenticated:
            logger.info(
                "socket refused",
                extra=socket_log_fields(self.scope, reason="anonymous", close_code=CLOSE_UNAUTHENTICATED),
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.groups = [
            services.DIRECTORY_GROUP,
            services.directory_user_group(self.scope["user"].pk),
            services.session_group(self.scope["session"]),
        ]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        html = await database_sync_to_async(fragments.directory_room_list)(user=self.scope["user"])
        await self.send(text_data=html)
        logger.info("socket connected", extra=socket_log_fields(self.scope))

    async def disconnect(self, code: int) -> None:
        """The base class has already left self.groups."""
        if self.scope["user"].is_authenticated:
            logger.info("socket disconnected", extra=socket_log_fields(self.scope, close_code=code))

    async def chat_fragment(self, event: dict) -> None:
        """Forward HTML rendered once for every directory (with the news, unless this user wrote it)."""
        html = event["html"]
        if "news_html" in event and event["author_id"] != self.scope["user"].pk:
            html += event["news_html"]
        await self.send(text_data=html)


async def sockets_stop_taking_frames() -> None:
    """Before the server closes the sockets (config/server.py): let each finish its frame in hand, refuse new ones."""
    global server_restarting
    server_restarting = True
    await asyncio.gather(*(consumer.stop_taking_frames() for consumer in list(open_sockets)))


_heartbeats: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def presence_heartbeat_ensure(channel_layer: object) -> None:
    """Run one presence heartbeat per event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    task = _heartbeats.get(loop)
    if task is None or task.done():
        _heartbeats[loop] = loop.create_task(
            presence_heartbeat(sole_server=isinstance(channel_layer, InMemoryChannelLayer))
        )


async def presence_heartbeat(*, sole_server: bool) -> None:
    """Refresh this process's connections and expire dead processes' ones, forever."""
    while True:
        try:
            await database_sync_to_async(services.presence_refresh)(
                server=SERVER_ID, live_channels=set(live_channels), sole_server=sole_server
            )
        except Exception:
            logger.exception("presence heartbeat failed; retrying")
        await asyncio.sleep(settings.CHAT_PRESENCE_HEARTBEAT)
