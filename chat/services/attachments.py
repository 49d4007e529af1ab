"""Attachments: a file or image shared in a conversation, stored as a message of its own."""

from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from accounts.models import User
from chat import attachments
from chat.errors import ChatError
from chat.models import Attachment, Message, Room
from chat.services.messages import message_create
from chat.services.storage import attachment_files_delete
from chat.services.threads import thread_parent_check

logger = logging.getLogger(__name__)


def attachment_size_check(*, size: int | None) -> None:
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    if not size:
        raise ChatError("That file is empty: choose a file to share.", reason="upload_empty")
    if size > limit:
        raise ChatError(
            f"Files can be at most {limit / 1024 / 1024:g} MiB; that one is larger.", reason="upload_too_large"
        )


def attachment_create(
    *, room: Room, author: User, upload: UploadedFile | None, caption: str = "", thread: object = None
) -> Message:
    """Share a file in a conversation as a message, shown live like any other (a reply in the thread of the message
    `thread` names, by the same rules as a typed reply).

    Images get a thumbnail, made once here. Who may then fetch the file follows who may read the message
    (selectors.attachment_get_visible).
    """
    if room.read_only:
        raise ChatError(f"#{room.name} is read-only: nobody can post here right now.", reason="room_read_only")
    if upload is None:
        raise ChatError("Choose a file to share.", reason="upload_missing")
    attachment_size_check(size=upload.size)
    caption = caption.replace("\x00", "").strip()
    if len(caption) > settings.CHAT_MESSAGE_MAX_LENGTH:
        raise ChatError(f"Captions can be at most {settings.CHAT_MESSAGE_MAX_LENGTH:,} characters.", reason="too_long")
    try:
        inspected = attachments.inspect(
            upload,
            max_pixels=settings.CHAT_ATTACHMENT_MAX_PIXELS,
            thumbnail_size=settings.CHAT_ATTACHMENT_THUMBNAIL_SIZE,
        )
    except attachments.ImageTooLarge as error:
        raise ChatError(
            f"That image is too large to show ({error} pixels; at most {settings.CHAT_ATTACHMENT_MAX_PIXELS:,}).",
            reason="upload_too_many_pixels",
        ) from error
    name = (upload.name or "file").replace("\x00", "")[-255:] or "file"
    attachment = Attachment(
        name=name,
        size=upload.size,
        content_type=inspected.content_type,
        width=inspected.width,
        height=inspected.height,
        thumbnail_width=inspected.thumbnail_width,
        thumbnail_height=inspected.thumbnail_height,
    )
    stored: list[str] = []
    committed = []
    try:
        with transaction.atomic():
            # First of the commit's callbacks: a failing live delivery after it must not delete committed files.
            transaction.on_commit(partial(committed.append, True))
            parent = None if thread in (None, "") else thread_parent_check(room=room, thread=thread)
            message = message_create(room=room, author=author, body=caption, parent=parent)
            attachment.message = message
            # The storage writes the bytes under a name of our own (Attachment.file's upload_to), never the upload's.
            attachment.file.save(name, upload, save=False)
            stored.append(attachment.file.name)
            if inspected.thumbnail is not None:
                attachment.thumbnail.save(
                    f"thumbnail{attachments.thumbnail_extension(inspected.thumbnail)}",
                    ContentFile(inspected.thumbnail),
                    save=False,
                )
                stored.append(attachment.thumbnail.name)
            attachment.save()
    except BaseException:
        if not committed:
            attachment_files_delete(names=stored)  # nothing is stored: no file either
        raise
    logger.info(
        "attachment stored",
        extra={"room": room.name, "user": author.username, "size": attachment.size, "type": attachment.content_type},
    )
    return message
