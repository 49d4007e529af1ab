"""What the HTTP API (chat.api) reads and writes: typed schemas, from which its OpenAPI document is made, and the one
function that turns a message into its JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema

from chat.errors import ChatError
from chat.models import Message, Room


class ErrorOut(Schema):
    error: str


class RoomOut(Schema):
    name: str
    kind: Literal["public", "private"]
    unread: int


class DirectOut(Schema):
    username: str
    unread: int


class ConversationsOut(Schema):
    rooms: list[RoomOut]
    dms: list[DirectOut]


class MessageIn(Schema):
    text: str
    # The message this one replies to, once threads exist (thread_parent_get).
    thread: int | None = None


class MessageOut(Schema):
    id: int
    room: str
    author: str
    text: str
    html: str
    created_at: datetime
    edited_at: datetime | None
    thread: int | None


class MessagesOut(Schema):
    messages: list[MessageOut]


class ThreadsUnavailable(ChatError):
    reason = "threads_unavailable"


def thread_parent_get(*, room: Room, thread: int | None) -> Message | None:
    """The message a new one replies to (None: not a reply). Threads do not exist yet: every parent is refused.

    When they come, this is where a parent is found in `room` (and refused when it is not there), and
    message_out's `thread` says which parent a reply has.
    """
    if thread is None:
        return None
    raise ThreadsUnavailable('Threads are not available yet: send the message without "thread".')


def conversation_label(room: Room) -> str:
    """How the API names a conversation: a room's name, or @ and the other person's username (room.peer)."""
    return f"@{room.peer.username}" if room.is_direct else room.name


def message_out(message: Message, *, room: Room) -> dict[str, object]:
    """A message as the API writes it; `room` is its conversation as the reader sees it. A deleted message keeps its
    place with an empty text."""
    return {
        "id": message.pk,
        "room": conversation_label(room),
        "author": message.author.username,
        "text": message.body,
        "html": str(message.body_markup),
        "created_at": message.created_at,
        "edited_at": message.edited_at,
        # A reply's parent, once threads exist (thread_parent_get).
        "thread": None,
    }
