"""A conversation's log, assembled from each message's fragment rendered once.

A message's fragment (`templates/chat/room.html#message`) is rendered once per process and kept as UTF-8 in a
byte-budgeted cache, least recently used out first (`CHAT_FRAGMENT_CACHE_BYTES`), under the message's id and whether
it shows as a whisper. It carries a stamp of everything it shows that can change (an edit, a retraction, reactions,
a thread's summary, names, the time zone and language its times were written in): a log that reads the message
again with another stamp renders it afresh. What depends on the message's place in a log or on the clock is put
in as the log is assembled, every time: "continued" (the same author within a ten-minute span follows), the minutes
left to edit it (`edit-left-N`), the day separators ("Today", "Yesterday") and the unread divider.

Every log is assembled here: a joining page's (the room's shared one, or its own with whispers and the divider), a
page of scroll-back and the room page's first render (`{% log_messages %}` in the `older-messages` partial).
"""

from __future__ import annotations

import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.utils import timezone, translation

from chat import fragments
from chat.models import Message, Room

# Where a fragment's class attribute takes what the log adds (templates/chat/room.html, `log_slot`). No stored text
# holds a NUL (PostgreSQL refuses one), so it marks that place alone.
SLOT = "\x00"
CONTINUED = b" message--continued"
# The stylesheet has a rule for each of 0 to EDIT_MINUTES_STYLED minutes left (static/css/chat.css).
EDIT_MINUTES_STYLED = 15
# What an entry holds besides its HTML: the item, its stamp and the cache's bookkeeping, about.
ENTRY_OVERHEAD_BYTES = 600


class SharedRenders:
    """Renders kept for reuse, least recently used first, within a budget of bytes: one that is evicted is made
    again by the next reader that needs it. Safe to share between the event loop and the database thread."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key: Hashable) -> object | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            self.entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: object, nbytes: int) -> None:
        with self.lock:
            self._discard(key)
            if nbytes > self.budget:
                return
            self.entries[key] = (value, nbytes)
            self.bytes += nbytes
            while self.bytes > self.budget:
                _, (_, evicted) = self.entries.popitem(last=False)
                self.bytes -= evicted

    def discard(self, key: Hashable) -> None:
        with self.lock:
            self._discard(key)

    def _discard(self, key: Hashable) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[1]

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.bytes = 0


@dataclass(frozen=True, slots=True)
class LogItem:
    """A message as a log places it: its rendered fragment, cut where the log adds its classes, and what the log
    needs to place it (the day and ten-minute span, in the time zone it was rendered in)."""

    pk: int
    author_id: int
    is_private: bool
    created_at: datetime
    day: date
    span: tuple[int, str]
    stamp: tuple
    head: bytes
    tail: bytes

    def nbytes(self) -> int:
        return len(self.head) + len(self.tail) + ENTRY_OVERHEAD_BYTES

    def html(self, *, continued: bool, now: datetime) -> bytes:
        """The message's fragment as the log shows it at `now`."""
        left = edit_minutes_left(self.created_at, now)
        return b"".join(
            (self.head, CONTINUED if continued else b"", f" edit-left-{left}".encode() if left else b"", self.tail)
        )


def edit_minutes_left(created_at: datetime, now: datetime | None = None) -> str:
    """Minutes the message's edit window has left at `now`, rounded up (0 once it has passed: its Edit and Delete
    are hidden); empty beyond what the stylesheet counts (the links stay until the next render)."""
    elapsed = ((now or timezone.now()) - created_at).total_seconds()
    minutes = max(0, math.ceil((settings.CHAT_EDIT_WINDOW_SECONDS - elapsed) / 60))
    return str(minutes) if minutes <= EDIT_MINUTES_STYLED else ""


_cache: SharedRenders | None = None


def fragments_cache() -> SharedRenders:
    """This process's rendered messages (`CHAT_FRAGMENT_CACHE_BYTES`)."""
    global _cache
    if _cache is None:
        _cache = SharedRenders(settings.CHAT_FRAGMENT_CACHE_BYTES)
    return _cache


def is_whisper(message: Message, room: Room | None) -> bool:
    """A direct conversation's message shown in another conversation's page (a room's): marked private."""
    return message.is_private and (room is None or message.room_id != room.pk)


def stamp_of(message: Message, *, room: Room | None, whisper: bool, zone: tuple[str, str]) -> tuple:
    """Everything a message's fragment shows that can change, and what tells one message from another (ids are
    reused by a database that rolled back)."""
    attachment = message.attachment_or_none
    return (
        message.room_id,
        None if whisper or room is None else room.name,
        message.author_id,
        tuple(message.mentioned_ids),
        message.created_at,
        hash(message.body_html),
        hash(message.body),
        message.edited_at,
        message.retracted_at,
        repr(message.reactions_summary),
        message.reply_count,
        message.last_reply_at,
        repr(message.last_repliers),
        message.author.username,
        message.recipient.username if whisper else None,
        attachment.pk if attachment is not None else None,
        zone,
    )


def rendered(message: Message, *, room: Room | None, whisper: bool, stamp: tuple) -> LogItem:
    # For every reader: a direct conversation's links name Room.PEER_PLACEHOLDER (log_html puts the reader's in).
    shown_in = None if whisper or room is None else room.shared()
    html = fragments.message_in_log(message=message, room=shown_in, slot=SLOT)
    head, tail = html.split(SLOT)
    local = timezone.localtime(message.created_at)
    return LogItem(
        pk=message.pk,
        author_id=message.author_id,
        is_private=message.is_private,
        created_at=message.created_at,
        day=local.date(),
        span=(message.author_id, f"{local:%Y%m%d%H}{local.minute // 10}"),
        stamp=stamp,
        head=head.encode(),
        tail=tail.encode(),
    )


def log_items(messages: Iterable[Message | LogItem], *, room: Room | None) -> list[LogItem]:
    """Each message's fragment, rendered now only when this process has none with its current stamp."""
    cache = fragments_cache()
    zone = (timezone.get_current_timezone_name(), translation.get_language())
    items = []
    for message in messages:
        if isinstance(message, LogItem):
            items.append(message)
            continue
        whisper = is_whisper(message, room)
        current = stamp_of(message, room=room, whisper=whisper, zone=zone)
        key = (message.pk, whisper)
        item = cache.get(key)
        if not isinstance(item, LogItem) or item.stamp != current:
            item = rendered(message, room=room, whisper=whisper, stamp=current)
            cache.put(key, item, item.nbytes())
        items.append(item)
    return items


_day_separators: dict[tuple, bytes] = {}
_divider: list[bytes] = []
_thread_open: list[bytes] = []


def day_separator(item: LogItem, today: date, zone: tuple[str, str]) -> bytes:
    """The line naming the day a log's message starts (it says "Today" only today)."""
    key = (item.day, today, zone)
    html = _day_separators.get(key)
    if html is None:
        if len(_day_separators) > 1_000:
            _day_separators.clear()
        html = _day_separators[key] = fragments.day_separator(message=item).encode()
    return html


def thread_open() -> bytes:
    if not _thread_open:
        _thread_open.append(fragments.thread_open().encode())
    return _thread_open[0]


def unread_divider() -> bytes:
    if not _divider:
        _divider.append(fragments.unread_divider().encode())
    return _divider[0]


def log_html(
    messages: Iterable[Message | LogItem],
    *,
    room: Room | None,
    divider_id: int | None = None,
    open_thread_id: int | None = None,
) -> str:
    """The messages as one log, oldest first: a day separator where a day starts, the unread divider before
    `divider_id`, and one author's messages of the same ten-minute span as one block (the later ones "continued",
    without name and time; not the first unread). Beside an open thread, its first message (`open_thread_id`) is
    only named: it shows in the thread. For `room`'s reader (`Room.for_reader`)."""
    now, today = timezone.now(), timezone.localdate()
    zone = (timezone.get_current_timezone_name(), translation.get_language())
    parts: list[bytes] = []
    day = span = None
    for item in log_items(messages, room=room):
        if item.day != day:
            day = item.day
            parts.append(day_separator(item, today, zone))
        if item.pk == divider_id:
            parts.append(unread_divider())
        continued = item.span == span and item.pk != divider_id
        span = item.span
        # The one place a message's fragment is chosen for a log.
        if item.pk == open_thread_id:
            parts.append(thread_open())
        else:
            parts.append(item.html(continued=continued, now=now))
    html = b"".join(parts).decode()
    return room.for_reader(html) if room is not None else html


def log_nbytes(items: list[LogItem]) -> int:
    """About what a list of items holds (each item's own bytes are shared with the fragment cache)."""
    return sys.getsizeof(items) + sum(item.nbytes() for item in items)
