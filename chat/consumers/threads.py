"""A thread's page: the conversation's socket, showing one thread (its first message and replies) beside the log.
The page names the thread in the socket's query, `?thread=<pk>`; the room consumer (chat.consumers.room) sends the log
as on the conversation's page, but for that message (shown in the thread), and asks this mixin about the thread."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from chat import fragments, selectors
from chat.consumers.base import CLOSE_NOT_FOUND, socket_log_fields
from chat.consumers.reading import read_marks
from chat.events import MessageAppended, MessageReplaced, MessagesRemoved
from chat.models import Message, Room
from chat.services.threads import thread_mark_read
from chat.transport import Frame

# One logger for every socket, "chat.consumers" (README, "Logs").
logger = logging.getLogger(__package__)


class ThreadPage:
    """What a conversation's socket does differently on a thread's page: the thread beside the log."""

    room: Room | None
    # The first message of the thread the page shows (None: the conversation's page).
    parent: Message | None = None
    thread_id: int | None = None
    # The newest reply the page was sent: live ones up to it are not sent again.
    thread_last_id = 0

    async def thread_open(self) -> bool:
        """A thread's page names its thread in the socket's query (`?thread=<pk>`): one of this conversation's
        messages that is not a reply, else the socket closes as its page would answer (404)."""
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        thread = query.get("thread", [""])[0]
        if not thread:
            return True
        parent = None
        if thread.isdigit() and len(thread) <= 18:
            parent = await database_sync_to_async(selectors.thread_parent)(room=self.room, message_id=int(thread))
        if parent is None or parent.parent_id is not None:
            logger.info(
                "socket refused",
                extra=socket_log_fields(self.scope, room=self.room.name, reason="thread_unknown", close_code=4004),
            )
            await self.close(code=CLOSE_NOT_FOUND)
            return False
        self.parent, self.thread_id = parent, parent.pk
        return True

    def sidebar_thread(self) -> Message | None:
        return self.parent

    def thread_render(self) -> str:
        """This thread: its first message and replies (all read now), for one reader."""
        self.parent.refresh_from_db()
        replies = selectors.thread_replies(parent=self.parent)
        thread_mark_read(parent=self.parent, user=self.user)
        self.thread_last_id = replies[-1].pk if replies else 0
        return fragments.thread(room=self.room, parent=self.parent, replies=replies)

    def thread_frame_for(self, event: MessageAppended | MessageReplaced | MessagesRemoved) -> Frame | None:
        """A reply's frame (new, changed or removed), for a page showing its thread; shown there, it is read."""
        if event.thread_id != self.thread_id:
            return None
        if isinstance(event, MessageAppended):
            if event.message_id <= self.thread_last_id:
                return None
            read_marks().note_thread(thread_id=self.thread_id, user_id=self.user_id, message_id=event.message_id)
        return self.frame_own(event)
