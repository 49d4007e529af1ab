"""Template helpers of the conversation pages.

`{% conversation_url room "search" %}`: a conversation's page for the reader, whether a room or a direct one.
`{% thread_url room message %}`: the page of a message's thread. A direct conversation's names the other person: for
a fragment rendered for no reader (the same goes to both people's pages), `Room.PEER_PLACEHOLDER`, which each page's
socket replaces with its own reader's other person.
`{{ value|machine_datetime }}`: a `<time datetime>` value HTML accepts (whole seconds, with the offset).
`{% attachment_limit as limit %}`: the largest file a person may share, in bytes.
`{{ day|day_label }}`: "Today", "Yesterday", or the day in full ("Monday 30 November", with the year when not this
one), in the current time zone.
`{{ message|edit_minutes_left }}`: whole minutes (rounded up) its author may still edit it, as the stylesheet's
`edit-left-<n>` classes count them (0 to 15; empty beyond: the links stay until the next render).
"""

import math
from datetime import datetime, timedelta

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.safestring import mark_safe

from chat.models import Message, Room

register = template.Library()


@register.simple_tag
def conversation_url(room: Room, view: str = "room", *args: object) -> str:
    return room.url(view, *args)


@register.simple_tag
def thread_url(room: Room, message: Message) -> str:
    if room.is_direct and room.peer is None:
        path = reverse("dm:thread", args=["peer", message.pk])
        return mark_safe(path.replace("/peer/", f"/{Room.PEER_PLACEHOLDER}/", 1))
    return room.url("thread", message.pk)


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


# The stylesheet has a rule for each of 0 to EDIT_MINUTES_STYLED minutes left (static/css/chat.css).
EDIT_MINUTES_STYLED = 15


@register.filter
def edit_minutes_left(message: Message) -> str:
    """Minutes the message's edit window has left, rounded up: after that many, its Edit and Delete hide."""
    elapsed = (timezone.now() - message.created_at).total_seconds()
    minutes = max(0, math.ceil((settings.CHAT_EDIT_WINDOW_SECONDS - elapsed) / 60))
    return str(minutes) if minutes <= EDIT_MINUTES_STYLED else ""


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
