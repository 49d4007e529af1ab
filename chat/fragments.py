"""The HTML fragments the sockets carry, rendered from the named partials of the room page."""

from __future__ import annotations

from django.conf import settings
from django.template.loader import render_to_string

from accounts.models import User
from chat.models import Message, Room

ROOM_TEMPLATE = "chat/room.html"


def _render(partial: str, context: dict) -> str:
    return render_to_string(f"{ROOM_TEMPLATE}#{partial}", {"max_length": settings.CHAT_MESSAGE_MAX_LENGTH, **context})


def message_appended(*, message: Message) -> str:
    """A new message, appended to the end of every receiving #messages."""
    return _render("message-live", {"message": message})


def message_log(*, messages: list[Message]) -> str:
    """The whole recent log, replacing #messages (sent on every connect)."""
    return _render("message-log", {"messages": messages, "oob": True})


def online_users(*, room: Room, users: list[User]) -> str:
    return _render("online-users", {"room": room, "online_users": users, "oob": True})


def message_form(*, room: Room, draft: str = "", oob: bool = True) -> str:
    return _render("message-form", {"room": room, "draft": draft, "oob": oob})


def chat_error(*, error: str = "") -> str:
    return _render("chat-error", {"error": error, "oob": True})
