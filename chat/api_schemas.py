"""What the HTTP API (chat.api) reads and writes: typed schemas, from which its OpenAPI document is made, and the one
function that turns a message into its JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Field, Schema

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
    # The message this one replies to in its thread (chat.services.threads checks it).
    thread: int | None = None
    # The client's key for this message (32 lowercase hex digits, as the page's forms send): the same text posted
    # again under it (a retry after a lost answer) is answered 200 with the message stored the first time.
    key: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")


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
        "thread": message.parent_id,
    }
