"""Template helpers of the conversation pages.

`{% conversation_url room "search" %}`: a conversation's page for the reader, whether a room or a direct one.
`{{ value|machine_datetime }}`: a `<time datetime>` value HTML accepts (whole seconds, with the offset).
`{% attachment_limit as limit %}`: the largest file a person may share, in bytes.
"""

from datetime import datetime

from django import template
from django.conf import settings
from django.utils import timezone

from chat.models import Room

register = template.Library()


@register.simple_tag
def conversation_url(room: Room, view: str = "room", *args: object) -> str:
    return room.url(view, *args)


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
