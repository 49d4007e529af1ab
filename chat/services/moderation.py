"""Moderation, for staff: deleting messages and closing rooms for posting, shown live on every open page."""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction
from django.db.models import QuerySet

from accounts.models import User
from chat import broadcasts
from chat.models import Attachment, Message, Room
from chat.services.storage import attachment_file_names, attachment_files_delete

logger = logging.getLogger(__name__)


def message_delete(*, message: Message, by: User) -> None:
    """Delete one message (moderation) and remove it from every page that shows it, live."""
    message_delete_many(messages=Message.objects.filter(pk=message.pk), by=by)


def message_delete_many(*, messages: QuerySet[Message], by: User) -> int:
    """Delete messages and, once committed, remove them from every open page: one frame per group."""
    doomed = list(messages.select_related("room"))
    if not doomed:
        return 0
    with transaction.atomic():
        files = attachment_file_names(Attachment.objects.filter(message__in=[message.pk for message in doomed]))
        Message.objects.filter(pk__in=[message.pk for message in doomed]).delete()
        transaction.on_commit(partial(broadcasts.messages_removed, messages=doomed))
        transaction.on_commit(partial(attachment_files_delete, names=files))
    logger.info(
        "messages deleted",
        extra={
            "count": len(doomed),
            "message_ids": [message.pk for message in doomed][:100],
            "rooms": sorted({message.room.name for message in doomed}),
            "by": by.username,
        },
    )
    return len(doomed)


def room_read_only_set(*, room: Room, read_only: bool, by: User) -> Room:
    """Close a room for posting (or open it again) and show its status live on every open page of it."""
    Room.objects.filter(pk=room.pk).update(read_only=read_only)
    room.read_only = read_only
    transaction.on_commit(partial(broadcasts.room_status_changed, room=room))
    logger.info("room read-only set", extra={"room": room.name, "read_only": read_only, "by": by.username})
    return room
