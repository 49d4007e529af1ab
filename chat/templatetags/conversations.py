"""Template helpers of the conversation pages.

`{% conversation_url room "search" %}`: a conversation's page for the reader, whether a room or a direct one.
`{% thread_url room message %}`: the page of a message's thread. A direct conversation's names the other person: for
a fragment rendered for no reader (the same goes to both people's pages), `Room.PEER_PLACEHOLDER`, which each page's
socket replaces with its own reader's other person.
`{% message_url "chat:message_edit" message.pk %}`: `{% url %}` for a view of one message or file, its path reversed
once per view (a log of fifty messages has some two hundred).
`{{ value|machine_datetime }}`: a `<time datetime>` value HTML accepts (whole seconds, with the offset).
`{% attachment_limit as limit %}`: the largest file a person may share, in bytes.
`{{ day|day_label }}`: "Today", "Yesterday", or the day in full ("Monday 30 November", with the year when not this
one), in the current time zone.
`{{ message|edit_minutes_left }}`: whole minutes (rounded up) its author may still edit it, as the stylesheet's
`edit-left-<n>` classes count them (0 to 15; empty beyond: the links stay until the next render).
`{% message_key %}`: a fresh key for a message form, which its message is stored under once (a frame sent again
finds it stored).
`{% log_messages %}`: the context's `chat_messages` as a log (chat.logs), for its `room`, with the unread divider
before `divider_id`.
"""

import secrets
from datetime import datetime, timedelta

from django import template
from django.conf import settings
from django.template.loader import render_to_string
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from chat import logs
from chat.models import REACTION_EMOJI, Message, Room

register = template.Library()


@register.simple_tag
def message_key() -> str:
    return secrets.token_hex(16)


@register.simple_tag
def conversation_url(room: Room, view: str = "room", *args: object) -> str:
    return room.url(view, *args)


# A number no path holds otherwise, standing for the id in a path reversed once (`reverse_by_id`).
ID_MARK = 918273645
# The paths reversed once, by view, leading arguments and script prefix, as (before the id, after it).
_paths_by_id: dict[tuple, tuple[str, str]] = {}


def reverse_by_id(view: str, pk: int, *leading: str) -> str:
    """reverse(view, args=[*leading, pk]) for a message's or file's own views, each path reversed once (a message
    renders four or five of them, and a log fifty messages)."""
    key = (view, leading, get_script_prefix())
    path = _paths_by_id.get(key)
    if path is None:
        if len(_paths_by_id) > 10_000:
            _paths_by_id.clear()
        before, after = reverse(view, args=[*leading, ID_MARK]).split(str(ID_MARK))
        path = _paths_by_id[key] = (before, after)
    return f"{path[0]}{int(pk)}{path[1]}"


@register.simple_tag
def message_url(view: str, pk: int) -> str:
    """`{% url view pk %}`, for the views of one message or file."""
    return reverse_by_id(view, pk)


# Stands for a message's reaction URL in the reaction choices rendered once (no URL holds a control character).
URL_MARK = "\x01"
_reaction_choices: list[str] = []


@register.simple_tag
def reaction_choices(url: str) -> SafeString:
    """A message's reaction choices (the room page's `reaction-choices` partial), rendered once for every message
    and given the message's reaction URL: eight buttons a message, fifty messages a log."""
    if not _reaction_choices:
        context = {"reaction_emoji": REACTION_EMOJI, "reaction_url": URL_MARK}
        _reaction_choices.extend(render_to_string("chat/room.html#reaction-choices", context).strip().split(URL_MARK))
    return mark_safe(conditional_escape(url).join(_reaction_choices))  # the partial's own, escaped when rendered


@register.simple_tag
def thread_url(room: Room, message: Message) -> str:
    if room.is_direct and room.peer is None:
        path = reverse_by_id("dm:thread", message.pk, "peer")
        return mark_safe(path.replace("/peer/", f"/{Room.PEER_PLACEHOLDER}/", 1))
    prefix, key = room.path_args
    return reverse_by_id(f"{prefix}:thread", message.pk, key)


@register.filter
def machine_datetime(value: datetime | None) -> str:
    """ISO 8601 in the current time zone, to the second: HTML's datetime allows at most three decimals, and the
    `c` format writes six."""
    if not value:
        return ""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.isoformat(timespec="seconds")


@register.simple_tag
def attachment_limit() -> int:
    return settings.CHAT_ATTACHMENT_MAX_BYTES


@register.filter
def edit_minutes_left(message: Message) -> str:
    """Minutes the message's edit window has left, rounded up: after that many, its Edit and Delete hide."""
    return logs.edit_minutes_left(message.created_at)


@register.simple_tag(takes_context=True)
def log_messages(context: template.Context) -> SafeString:
    """The log's messages, each from its fragment rendered once (chat.logs)."""
    html = logs.log_html(
        context["chat_messages"],
        room=context.get("room"),
        divider_id=context.get("divider_id"),
        open_thread_id=context.get("open_thread_id"),
    )
    return mark_safe(html)  # the fragments are the message partial's own, escaped when rendered


@register.filter
def day_label(value: datetime) -> str:
    """The name of the day a message was sent on, as a day separator of the log shows it."""
    day = timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    today = timezone.localdate()
    if day == today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    return date_format(day, "l j F" if day.year == today.year else "l j F Y")
