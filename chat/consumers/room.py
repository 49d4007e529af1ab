"""The socket of a conversation's page (a room, or two people's direct conversation): parse, call a service, send."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from concurrent.futures import Future
from functools import partial

from channels.db import database_sync_to_async

from chat import broadcasts, fragments, logs, selectors
from chat.consumers.base import (
    CLOSE_INVALID_ROOM,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    HubConsumer,
    server_restarting,
    socket_log_fields,
)
from chat.consumers.reading import read_marks
from chat.consumers.threads import ThreadPage
from chat.errors import ChatError, DeliveryError, InvalidRoomName
from chat.events import (
    AccessChanged,
    Event,
    Fragment,
    LayerBack,
    LayerLost,
    MessageAppended,
    MessageReplaced,
    MessagesRemoved,
    RoomStatusChanged,
    ThreadSummaryChanged,
    TypingNoticed,
)
from chat.groups import session_group, user_group
from chat.hub import CachedLog, hub
from chat.models import Room
from chat.services.memberships import conversation_mark_read
from chat.services.messages import message_post
from chat.services.rooms import conversation_open
from chat.services.threads import thread_mark_read
from chat.transport import Frame

# One logger for every socket, "chat.consumers" (README, "Logs").
logger = logging.getLogger(__package__)

# The browser sends typing notices at most every 2 s; the server forwards at most one a second, below the
# browser's period, so that it never drops a notice the browser's throttle let through (a flood it does drop).
TYPING_THROTTLE_SECONDS = 1.0

# The multi-line box's form (templates/chat/room.html): the htmx ws extension names it in HX-Trigger.
LINES_FORM_ID = "message-lines"

# The key each message form carries (`{% message_key %}`): anything else is ignored, and the message stored without.
MESSAGE_KEY_RE = re.compile(r"[0-9a-f]{32}")

# Refusals no person at a browser causes (the form caps the length) or that mean a flood: logged as warnings.
WARNING_REASONS = frozenset({"too_long", "rate_limited"})

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


def frame_payload(text_data: str | None) -> dict:
    """The JSON object of a text frame, or {} when the frame is not one."""
    try:
        payload = json.loads(text_data) if text_data is not None else None
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


class ChatRoomConsumer(ThreadPage, HubConsumer):
    """One browser tab with one conversation open."""

    room: Room | None = None
    typing_sent_at = float("-inf")
    present = False
    layer_up = True
    log_last_id = 0
    # The oldest message of the log this page was sent (a thread's summary older than it is not shown here).
    log_first_id = 0

    async def hub_event(self, event: Event) -> None:
        if self.session_ended:
            return
        match event:
            case RoomStatusChanged():
                await self.room_status(event)
            case AccessChanged():
                await self.room_access(event)
            case LayerLost():
                await self.layer_lost()
            case LayerBack():
                await self.layer_back()
            case _:
                await super().hub_event(event)

    async def layer_lost(self) -> None:
        """The channel layer stopped answering: say so once; messages are still stored, only not delivered live."""
        if not self.layer_up or self.room is None:
            return
        self.layer_up = False
        logger.warning("channel layer unavailable", extra=socket_log_fields(self.scope, room=self.room.name))
        await self.send(text_data=fragments.chat_error(error=LAYER_LOST_ERROR))

    async def layer_back(self) -> None:
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
            if self.restarting or server_restarting():
                return
            await super().websocket_receive(message)

    async def connect(self) -> None:
        """Join the conversation's and the user's groups, count the connection, send the log, the online list and
        the sidebar."""
        conversation = self.scope["url_route"]["kwargs"]  # {"room_name": ...} or {"username": ...}
        name = next(iter(conversation.values()))
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
            self.room = await database_sync_to_async(conversation_open)(user=self.user, **conversation)
        except ChatError as error:
            code = CLOSE_INVALID_ROOM if isinstance(error, InvalidRoomName) else CLOSE_NOT_FOUND
            logger.info(
                "socket refused",
                extra=socket_log_fields(self.scope, room=name[:60], reason=error.reason, close_code=code),
            )
            await self.send(text_data=fragments.chat_error(error=str(error)))
            await self.close(code=code)
            return
        self.showing_room_id = self.room.pk
        if not await self.thread_open():
            return
        self.grant_make()
        self.state = hub().room(self.room)
        # Joined before the log is read, so that no message falls between the two.
        groups = [
            self.room.group_name,
            user_group(self.user.pk),
            session_group(self.scope["session"]),
            *await self.sidebar_groups(),
        ]
        await self.hub_join(groups)
        if not hub().up:
            await self.layer_lost()
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
        status = fragments.room_status(room=self.room) if extra is None else extra
        version = state.log_version
        cached = hub().log_cached(state)
        log_html, self.log_last_id, fresh = await database_sync_to_async(self.log_render)(cached, version)
        if fresh is not None:
            hub().log_keep(state, fresh)
        if self.parent is not None:
            log_html += await database_sync_to_async(self.thread_render)()
        return self.room.for_reader(log_html + online_html + status + fragments.connection(state="live"))

    def log_render(self, cached: CachedLog | None, version: int) -> tuple[str, int, CachedLog | None]:
        """This page's log and sidebar: the room's shared messages (rendered once, chat.logs), with the user's
        whispers among them and the unread divider, assembled for this page."""
        # Read again now that the groups are joined: a room closed since it was loaded is not missed.
        self.room.refresh_from_db(fields=["read_only"])
        fresh = None
        if cached is None:
            items = logs.log_items(selectors.room_messages_recent(room=self.room), room=self.room)
            cached = fresh = CachedLog(version=version, items=items)
        latest_id = cached.items[-1].pk if cached.items else 0
        self.log_first_id = cached.items[0].pk if cached.items else 0
        last_read_id = conversation_mark_read(room=self.room, user=self.user, latest_id=latest_id, join=True)
        sidebar_html = self.sidebar_render()
        # A room page shows the user's direct messages among the room's, as whispers.
        private = []
        if not self.room.is_direct:
            private = selectors.private_messages_recent(user=self.user, rooms=self.direct_room_ids)
        items = selectors.messages_merged(cached.items, logs.log_items(private, room=self.room))
        # Live messages already in this log are not forwarded again (a message may land in between).
        last_id = items[-1].pk if items else 0
        divider_id = selectors.unread_divider_id(messages=items, last_read_id=last_read_id, user=self.user)
        log_html = fragments.message_log(
            room=self.room, messages=items, divider_id=divider_id, open_thread_id=self.thread_id
        )
        return log_html + sidebar_html, last_id, fresh

    def page_path(self) -> str:
        return self.room.url()

    def page_title(self) -> str:
        return self.room.title

    def sidebar_current(self) -> Room | None:
        return self.room

    async def hub_leave(self) -> None:
        """Uncount this connection and leave the groups, once; everything shown meanwhile has been read."""
        if self.present:
            self.present = False
            await hub().presence_leave(self.room, self.user)
            await super().hub_leave()
            if self.parent is not None:
                await database_sync_to_async(thread_mark_read)(parent=self.parent, user=self.user)
            await database_sync_to_async(conversation_mark_read)(room=self.room, user=self.user)
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
        payload = frame_payload(text_data)
        if readable(payload.get("message")):
            headers = payload.get("HEADERS")
            lines = isinstance(headers, dict) and headers.get("HX-Trigger") == LINES_FORM_ID
            key = payload.get("key")
            key = key if isinstance(key, str) and MESSAGE_KEY_RE.fullmatch(key) else None
            await self.post_message(payload["message"], lines=lines, thread=payload.get("thread") or None, key=key)
        elif payload.get("typing"):
            await self.announce_typing()
        else:
            logger.warning(
                "frame rejected", extra=socket_log_fields(self.scope, room=self.room.name, reason="malformed")
            )
            await self.send_error("That message could not be read. Please type it again.")

    def post_checked(
        self,
        text: str,
        thread: object = None,
        loop: asyncio.AbstractEventLoop | None = None,
        key: str | None = None,
    ) -> tuple[int | None, list[Future]]:
        """Store what the form sent while this socket's session and access hold; else the close code. With a `loop`,
        the message is published from it, in the room's order, while this thread goes on: the futures say whether."""
        revoked = self.grant_revoked()
        with broadcasts.deliveries_handed_over(loop) as handed:
            if revoked is None:
                message_post(room=self.room, author=self.user, text=text, thread=thread, key=key)
        return revoked, handed

    def form(self, *, lines: bool, draft: str = "", reply: bool = False) -> str:
        """The box the message came from, fresh or holding `draft`: the one-line box, the multi-line one, or a
        thread's reply box."""
        if reply and self.parent is not None:
            return fragments.thread_form(room=self.room, parent=self.parent, draft=draft)
        if lines:
            return fragments.lines_form(room=self.room, draft=draft)
        return fragments.message_form(room=self.room, draft=draft)

    async def post_message(
        self, text: str, *, lines: bool = False, thread: object = None, key: str | None = None
    ) -> None:
        """Store and publish what the form sent (a reply when it names a `thread`; once for its form's `key`); answer
        the sender with a fresh form or an error."""
        reply = thread is not None
        try:
            revoked, handed = await database_sync_to_async(self.post_checked)(
                text, thread, asyncio.get_running_loop(), key
            )
            for delivery in handed:
                if not await asyncio.wrap_future(delivery):
                    raise broadcasts.message_undelivered()
        except DeliveryError as error:
            logger.warning(
                "message not delivered live",
                extra=socket_log_fields(self.scope, room=self.room.name, reason=error.reason),
            )
            await self.send(text_data=fragments.chat_error(error=str(error)) + self.form(lines=lines, reply=reply))
        except ChatError as error:
            # The reason code, not the sentence: the sentence can quote what the user typed.
            level = logging.WARNING if error.reason in WARNING_REASONS else logging.INFO
            logger.log(
                level, "message refused", extra=socket_log_fields(self.scope, room=self.room.name, reason=error.reason)
            )
            # A browser's frame holds at most 64 KiB; longer text came in fragments from a script, and sending it
            # back whole could make a frame larger than daphne will send (it would close the socket with 1011).
            await self.send_error(str(error), draft=text[:65536], lines=lines, reply=reply)
        else:
            if revoked is not None:
                await self.revoke(revoked)
                return
            # The message removed this user's notice; the next keystroke may announce typing again at once.
            self.typing_sent_at = float("-inf")
            await self.send(text_data=fragments.chat_error() + self.form(lines=lines, reply=reply))

    async def announce_typing(self) -> None:
        """Tell the others in the room that this user is typing: throttled, nothing stored, lost if the layer is."""
        now = time.monotonic()
        if now - self.typing_sent_at < TYPING_THROTTLE_SECONDS:
            return
        self.typing_sent_at = now
        revoked = await database_sync_to_async(self.grant_revoked)()
        if revoked is not None:
            await self.revoke(revoked)
            return
        await hub().publish(
            TypingNoticed(html=fragments.typing(typist=self.user), typist_id=self.user.pk), self.room.group_name
        )

    async def send_error(self, error: str, draft: str = "", *, lines: bool = False, reply: bool = False) -> None:
        """Show the error above the form and keep what the user typed."""
        await self.send(text_data=fragments.chat_error(error=error) + self.form(lines=lines, draft=draft, reply=reply))

    async def room_status(self, event: RoomStatusChanged) -> None:
        """A moderator closed or opened the room: post accordingly, and show it."""
        self.room.read_only = event.read_only
        await self.send(text_data=event.html)

    async def room_access(self, event: AccessChanged) -> None:
        """Who may read the room changed (made private, a member left or was removed): a reader no longer among
        them is closed out, as if the room did not exist."""
        if not self.room.is_direct:
            self.room.kind = Room.Kind.PRIVATE if event.members_only else Room.Kind.PUBLIC
        if event.members_only and self.user_id not in event.member_ids:
            await self.access_withdrawn()

    def frame_for(self, event: Fragment) -> Frame | None:
        """HTML rendered once for the whole group; not a message already in this log, not to a typist."""
        if self.held is not None:  # the page's log and online list are not out yet: they come first
            self.held.append(event)
            return None
        if self.session_ended:
            return None
        match event:
            case MessageAppended() | MessageReplaced() | MessagesRemoved() if event.thread_id is not None:
                return self.thread_frame_for(event)  # a reply: only the pages of its thread show it
            case ThreadSummaryChanged() if event.thread_id < self.log_first_id and event.thread_id != self.thread_id:
                return None  # its message is older than this page's log, and not the open thread's
            case MessageAppended() if event.message_id <= self.log_last_id:
                return None
            # Whispers are for room pages: a direct conversation's page shows that conversation only (its own
            # messages come to it as messages of its group, not as whispers).
            case MessageAppended() | MessageReplaced() if event.whisper_of is not None and self.room.is_direct:
                return None
            case TypingNoticed() if event.typist_id == self.user_id:
                return None
            case MessageAppended() if event.whisper_of is None:  # shown: read (chat.consumers.reading)
                read_marks().note(room_id=self.room.pk, user_id=self.user_id, message_id=event.message_id)
        return self.frame_own(event)

    def frame_own(self, event: Fragment) -> Frame:
        """The event's frame, shared by every socket it goes to; a direct conversation's links made this reader's."""
        frame = event.frame()
        if self.room.is_direct and Room.PEER_PLACEHOLDER in frame.text:
            return Frame(self.room.for_reader(frame.text))
        return frame
