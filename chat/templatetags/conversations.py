"""`{% conversation_url room "search" %}`: a conversation's page for the reader, whether a room or a direct one."""

from django import template

from chat.models import Room

register = template.Library()


@register.simple_tag
def conversation_url(room: Room, view: str = "room", *args: object) -> str:
    return room.url(view, *args)
