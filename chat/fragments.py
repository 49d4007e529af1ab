"""The HTML fragments the sockets carry, rendered from the named partials of the room page.

A fragment of a message is rendered once for all its readers: a direct conversation's links in it name
`Room.PEER_PLACEHOLDER`, which each reader's page puts their other person in (`Room.for_reader`)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.paginator import Page
from django.http import HttpRequest
from django.template.loader import render_to_string

from accounts.models import User
from chat import selectors
from chat.models import REACTION_EMOJI, Message, Room

ROOM_TEMPLATE = "chat/room.html"
DIRECTORY_TEMPLATE = "chat/directory.html"


def limits() -> dict[str, object]:
    """What the room template needs besides its data: the form's maxlength, the log's page size, the emoji."""
    return {
        "max_length": settings.CHAT_MESSAGE_MAX_LENGTH,
        "history_length": settings.CHAT_HISTORY_LENGTH,
        "reaction_emoji": REACTION_EMOJI,
    }


def _render(partial: str, context: dict, request: HttpRequest | None = None) -> str:
    return render_to_string(f"{ROOM_TEMPLATE}#{partial}", {**limits(), **context}, request=request)


def message_appended(
    *, message: Message, whisper: bool = False, new_day: bool = False, continued: bool = False
) -> str:
    """A new message, appended to the end of every receiving #messages; a `whisper` in a room page (a message of a
    direct conversation shown beside the room's, marked private); `new_day`: the first of its day, after a day
    separator; `continued`: following its author's last message, shown as part of it (no name and time)."""
    context = {"message": message, "room": None if whisper else message.room.shared(), "new_day": new_day}
    context["continued"] = continued
    return _render("message-live", context)


def reply_appended(*, message: Message) -> str:
    """A new reply, at the end of every open page of its thread."""
    return _render("reply-appended", {"message": message, "room": message.room.shared()})


def thread_summary(*, message: Message) -> str:
    """A thread's first message's link into it, with its summary: replaced wherever that message shows."""
    return _render("thread-link", {"message": message, "room": message.room.shared(), "summary_oob": True})


def thread(*, room: Room, parent: Message, replies: list[Message]) -> str:
    """A thread's first message and its replies, replacing #thread when its page's socket (re)connects (rendered for
    one reader: its links name `room.peer`)."""
    return _render("thread", {"room": room, "parent": parent, "replies": replies, "oob": True})


def thread_form(*, room: Room, parent: Message, draft: str = "") -> str:
    return _render("thread-form", {"room": room, "parent": parent, "draft": draft, "oob": True})


def message_log(
    *, room: Room, messages: list[Message], divider_id: int | None = None, open_thread_id: int | None = None
) -> str:
    """The whole recent log, replacing #messages (sent on every connect); beside an open thread, that thread's
    first message shows only in the thread (`open_thread_id`)."""
    context = {"room": room, "chat_messages": messages, "divider_id": divider_id, "oob": True}
    context["open_thread_id"] = open_thread_id
    return _render("message-log", context)


def message_in_log(*, message: Message, room: Room | None, slot: str) -> str:
    """A message as a log keeps it (chat.logs), `slot` where the log adds its classes ("continued", minutes left to
    edit); `room` None for a whisper."""
    return _render("message", {"message": message, "room": room, "log_slot": slot})


def day_separator(*, message: object) -> str:
    return _render("day-separator", {"message": message})


def unread_divider() -> str:
    return _render("unread-divider", {})


def thread_open() -> str:
    """What a log beside an open thread shows in place of its first message."""
    return _render("thread-open", {})


def message_replaced(*, message: Message, whisper: bool = False) -> str:
    """An edited or retracted message, replacing it wherever it shows (as a whisper in room pages)."""
    room = None if whisper else message.room.shared()
    return _render("message", {"message": message, "replace": True, "room": room})


def reactions(*, message: Message, oob: bool = True) -> str:
    """A message's reactions, replacing them wherever the message shows (who reacted: classes the pages style)."""
    return _render("reactions", {"message": message, "reactions_oob": oob})


def message_edit_form(*, request: HttpRequest, message: Message, error: str = "") -> str:
    """The author's inline editor; rendered with the request for its CSRF token (it can also post natively)."""
    return _render("message-edit-form", {"message": message, "error": error}, request=request)


def older_messages(*, room: Room, messages: list[Message]) -> str:
    """A page of older messages, replacing the scroll-back marker at the top of the log."""
    return _render("older-messages", {"room": room, "chat_messages": messages})


def online_users(*, room: Room, users: list[User]) -> str:
    """The whole online list, replacing #online-users (sent to a socket when it connects)."""
    return _render("online-users", {"room": room, "online_users": users, "oob": True})


def online_users_changed(*, room: Room, arrived: list[User], departed_ids: list[int]) -> str:
    """Who came and who went in one room since the last announcement, for every open online list of it."""
    return _render("online-users-changed", {"room": room, "arrived": arrived, "departed_ids": departed_ids})


def message_form(*, room: Room, draft: str = "", oob: bool = True) -> str:
    return _render("message-form", {"room": room, "draft": draft, "oob": oob})


def lines_form(*, room: Room, draft: str = "") -> str:
    """A fresh multi-line box, left open (the person was writing there), holding `draft` after a refusal."""
    return _render("lines-form", {"room": room, "draft": draft, "oob": True, "lines_open": True})


def upload_form(*, request: HttpRequest, room: Room, thread: Message | None = None) -> str:
    """A fresh upload form (its file input emptied; a `thread`'s, for its replies), rendered with the request for its
    CSRF token."""
    return _render("upload-form", {"room": room, "upload_oob": True, "upload_thread": thread}, request=request)


def directory_room_list(*, rooms: Page) -> str:
    """A page of the directory, replacing #room-list when a directory socket (re)connects."""
    return render_to_string(f"{DIRECTORY_TEMPLATE}#room-list", {"rooms": rooms, "oob": True})


def directory_room_removed(*, room: Room) -> str:
    """A room made private leaves every open directory."""
    return render_to_string(f"{DIRECTORY_TEMPLATE}#room-removed", {"room": room})


def directory_mentioned(*, room: Room) -> str:
    """Flags the room in a mentioned user's directory."""
    return render_to_string(f"{DIRECTORY_TEMPLATE}#room-mentioned", {"room": room, "mentioned": True, "oob": True})


def directory_room_added(*, room: Room) -> str:
    """A new room, at the top of every open directory."""
    return render_to_string(f"{DIRECTORY_TEMPLATE}#room-added", {"room": room})


def directory_online_count(*, room: Room, online_count: int) -> str:
    return render_to_string(
        f"{DIRECTORY_TEMPLATE}#room-online", {"room": room, "online_count": online_count, "oob": True}
    )


def directory_unread_one_more(*, room: Room) -> str:
    """One more unread message on the room's badge (a CSS counter counts them)."""
    return render_to_string(f"{DIRECTORY_TEMPLATE}#room-unread-one-more", {"room": room})


def directory_activity(*, room: Room, last_message_at: datetime) -> str:
    return render_to_string(
        f"{DIRECTORY_TEMPLATE}#room-activity", {"room": room, "last_message_at": last_message_at, "oob": True}
    )


def typing(*, typist: User) -> str:
    """The notice that someone is typing, replacing their previous one (it fades by itself)."""
    return _render("typing", {"typist": typist})


def chat_error(*, error: str = "") -> str:
    return _render("chat-error", {"error": error, "oob": True})


def messages_removed(*, message_ids: list[int]) -> str:
    """Removes those messages from a page that shows them (moderation); ids it does not show are ignored."""
    return _render("messages-removed", {"message_ids": message_ids})


def room_status(*, room: Room) -> str:
    """The line under the room's title saying whether it is read-only."""
    return _render("room-status", {"room": room, "oob": True})


SIDEBAR_TEMPLATE = "chat/sidebar.html"


def sidebar(*, sidebar: selectors.Sidebar) -> str:
    """The user's whole sidebar, replacing #sidebar when a page's socket (re)connects."""
    return render_to_string(f"{SIDEBAR_TEMPLATE}#sidebar", {"sidebar": sidebar, "oob": True})


def sidebar_entry_added(*, room: Room, unread: int = 0) -> str:
    """A conversation the user is now in, at the end of their sidebar's rooms or people (once, however often)."""
    room.unread_count, room.mentioned = unread, False
    return render_to_string(f"{SIDEBAR_TEMPLATE}#sidebar-entry-added", {"room": room})


def sidebar_entry_removed(*, room: Room) -> str:
    return render_to_string(f"{SIDEBAR_TEMPLATE}#sidebar-entry-removed", {"room": room})


def sidebar_badges(*, room_id: int, unread: int, mentioned: bool) -> str:
    """A sidebar entry's unread count and mention flag; the same for every page whose count it is."""
    room = Room(pk=room_id)
    room.unread_count, room.mentioned = unread, mentioned
    return render_to_string(f"{SIDEBAR_TEMPLATE}#sidebar-badges", {"room": room, "oob": True})


def sidebar_threads(*, unread: int) -> str:
    """The sidebar's way to the followed threads, with their unread replies."""
    return render_to_string(f"{SIDEBAR_TEMPLATE}#sidebar-threads", {"unread": unread, "oob": True})


def page_title(*, title: str, count: int) -> str:
    """The page's <title>, "(N) " first while N unread messages notify its user."""
    return render_to_string(f"{SIDEBAR_TEMPLATE}#page-title", {"title": title, "count": count})


def connection(*, state: str, next_path: str = "") -> str:
    """The socket's state in the page's header: "live" (renewed while the socket lives), "ended" (signed out, with a
    way to log in again and come back to `next_path`) or "closed" (the conversation is closed to the reader)."""
    return render_to_string("chat/connection.html#connection", {"state": state, "next": next_path, "oob": True})
