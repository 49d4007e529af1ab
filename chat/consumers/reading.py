"""Read marks while a conversation is open: what this process's pages showed, written in one batch a moment later.

A page that shows a conversation has read it: its messages are not unread on the user's other pages, in their
title or in an email (chat.services.emails). Writing the mark per message and page would be a write per frame;
instead each page notes the newest message it showed, and every READ_MARKS_SECONDS one batch moves the marks, one
UPDATE per conversation and message. Closing the page marks the rest (ChatRoomConsumer.hub_leave).
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from chat.services.memberships import read_marks_advance
from chat.services.threads import thread_marks_advance

logger = logging.getLogger(__name__)

READ_MARKS_SECONDS = 2.0


class ReadMarks:
    """The marks this event loop's pages have to write: the newest message each (conversation, user) was shown."""

    def __init__(self) -> None:
        # {(conversation id, user id): message id}, and {(thread id, user id): reply id} for threads' pages.
        self.pending: dict[tuple[int, int], int] = {}
        self.pending_threads: dict[tuple[int, int], int] = {}
        self.writing: asyncio.Task | None = None

    def note(self, *, room_id: int, user_id: int, message_id: int) -> None:
        self._note(self.pending, (room_id, user_id), message_id)

    def note_thread(self, *, thread_id: int, user_id: int, message_id: int) -> None:
        self._note(self.pending_threads, (thread_id, user_id), message_id)

    def _note(self, pending: dict[tuple[int, int], int], key: tuple[int, int], message_id: int) -> None:
        if message_id > pending.get(key, 0):
            pending[key] = message_id
        if self.writing is None:
            self.writing = asyncio.get_running_loop().create_task(self.write_soon())

    async def write_soon(self) -> None:
        try:
            await asyncio.sleep(READ_MARKS_SECONDS)
        finally:
            self.writing = None
        marks, self.pending = self.pending, {}
        thread_marks, self.pending_threads = self.pending_threads, {}
        try:
            if marks:
                await database_sync_to_async(read_marks_advance)(marks=marks)
            if thread_marks:
                await database_sync_to_async(thread_marks_advance)(marks=thread_marks)
        except Exception:  # the database is away: closing the pages marks them read
            logger.warning("read marks not written", exc_info=True, extra={"marks": len(marks) + len(thread_marks)})


_read_marks: dict[asyncio.AbstractEventLoop, ReadMarks] = {}


def read_marks() -> ReadMarks:
    """The running event loop's read marks (one per server process)."""
    loop = asyncio.get_running_loop()
    found = _read_marks.get(loop)
    if found is None:
        for stale in [other for other in _read_marks if other.is_closed()]:
            del _read_marks[stale]
        found = _read_marks[loop] = ReadMarks()
    return found
