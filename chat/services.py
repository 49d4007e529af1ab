"""Writes: the rules of the chat. Each action stores first, then publishes once on commit."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial, wraps

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import QuerySet, prefetch_related_objects
from django.utils import timezone

from accounts.models import User
from chat import attachments, flood, formatting, fragments, selectors
from chat.models import (
    MENTION_RE,
    REACTION_EMOJI,
    ROOM_NAME_RE,
    Attachment,
    Message,
    Reaction,
    Room,
    RoomVisit,
)

logger = logging.getLogger(__name__)

PRIVATE_COMMAND_RE = re.compile(r"^/pm(?:\s+(?P<username>\S+))?(?:\s+(?P<body>.*))?$", re.DOTALL)


class ChatError(Exception):
    """A refusal that the user sees as a sentence in #chat-error.

    `reason` is a short code for the logs, which never carry the sentence: it can quote what the user typed.
    """

    reason = "refused"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidRoomName(ChatError):
    reason = "invalid_room"


class DeliveryError(ChatError):
    """The message is stored but the channel layer could not carry it live."""

    reason = "delivery_failed"


class StorageError(ChatError):
    """The database refused the message: nothing is stored, nothing is published."""

    reason = "storage_failed"


def published_best_effort(publish: Callable[..., None]) -> Callable[..., None]:
    """For what every page is sent again when its socket (re)connects: a layer outage is a warning, not a failure.

    Otherwise the outage would fail what triggered the publish: a connect, a leave, a room page that creates a room.
    """

    @wraps(publish)
    def publish_or_warn(**kwargs: object) -> None:
        try:
            publish(**kwargs)
        except Exception as error:  # the layer's errors depend on its backend (Redis, in-memory)
            logger.warning("not delivered live", extra={"publish": publish.__name__, "reason": type(error).__name__})

    return publish_or_warn


# Every open room directory page.
DIRECTORY_GROUP = "directory"


def group_publish(group: str, event: dict) -> None:
    """Send an event to a group through the channel layer; each process's hub hands it to its sockets (chat.hub)."""
    async_to_sync(get_channel_layer().group_send)(group, {**event, "group": group})


def directory_user_group(user_id: int) -> str:
    """The channel-layer group of one user's open directory pages."""
    return f"directory_user_{user_id}"


def user_group(user_id: int) -> str:
    """The channel-layer group of every open socket of one user, in any room."""
    return f"user_{user_id}"


# Kept in the session's data: it survives the key change of a password change (the tabs opened before it keep
# their socket), and goes with the session at logout.
SESSION_SOCKETS_KEY = "_chat_sockets"


def session_sockets_mark(*, session: SessionBase) -> None:
    """Give a newly logged-in session the id its sockets are grouped by (kept if it has one)."""
    if SESSION_SOCKETS_KEY not in session:
        session[SESSION_SOCKETS_KEY] = secrets.token_hex(16)


def session_group(session: SessionBase) -> str:
    """The channel-layer group of every socket opened with one login session; never the session key itself.

    A session from before the id existed is known by its key (what the browser sent with the socket).
    """
    identity = session.get(SESSION_SOCKETS_KEY) or session.session_key or ""
    return "session_" + hashlib.sha256(identity.encode()).hexdigest()[:32]


def session_end_event(*, reason: str, keep_session: str | None = None) -> dict[str, object]:
    """What tells a socket that the session it was opened with has ended (closed with 4001, sent nothing more)."""
    return {"type": "session.end", "reason": reason, "keep_session": keep_session}


@published_best_effort
def session_sockets_close_publish(*, group: str, reason: str) -> None:
    group_publish(group, session_end_event(reason=reason))


def session_sockets_close(*, session: SessionBase, reason: str = "logout") -> None:
    """Close every socket opened with this session (room and directory pages), on any server process, on commit."""
    group = session_group(session)
    transaction.on_commit(partial(session_sockets_close_publish, group=group, reason=reason))


@published_best_effort
def user_sockets_close_publish(*, user_id: int, reason: str, keep_session: str | None) -> None:
    event = session_end_event(reason=reason, keep_session=keep_session)
    # Room sockets are in the user's group, directory sockets in the user's directory group.
    for group in (user_group(user_id), directory_user_group(user_id)):
        group_publish(group, event)


def user_sockets_close(*, user: User, reason: str, keep_session: SessionBase | None = None) -> None:
    """Close every socket of the user on any server process, on commit, but those of `keep_session`."""
    keep = session_group(keep_session) if keep_session is not None else None
    transaction.on_commit(partial(user_sockets_close_publish, user_id=user.pk, reason=reason, keep_session=keep))


def room_name_validate(name: str) -> str:
    if not ROOM_NAME_RE.fullmatch(name):
        raise InvalidRoomName("Room names are 1 to 50 letters, digits, hyphens or underscores.")
    return name


def room_get_or_create(*, name: str) -> Room:
    """The room of that name in any casing, created with this casing when new."""
    room_name_validate(name)
    room = selectors.room_get(name=name)
    if room is not None:
        return room
    try:
        with transaction.atomic():
            room = Room.objects.create(name=name)
            transaction.on_commit(partial(room_created_publish, room=room))
            return room
    except IntegrityError:  # created by someone else a moment ago
        return selectors.room_get(name=name)


@published_best_effort
def room_created_publish(*, room: Room) -> None:
    """Show a new room at the top of every open directory."""
    html = fragments.directory_room_added(room=room)
    group_publish(DIRECTORY_GROUP, {"type": "chat.fragment", "html": html})


@dataclass(frozen=True)
class ParsedMessage:
    body: str
    recipient: User | None = None


def message_parse(*, author: User, text: str) -> ParsedMessage:
    """Split `/pm <username> <text>` from a room message, refusing what cannot be sent."""
    text = text.strip()
    limit = settings.CHAT_MESSAGE_MAX_LENGTH
    if len(text) > limit:
        raise ChatError(f"Messages can be at most {limit:,} characters; yours has {len(text):,}.", reason="too_long")
    command = PRIVATE_COMMAND_RE.fullmatch(text)
    if command is None:
        return ParsedMessage(body=text)
    username, body = command["username"], (command["body"] or "").strip()
    if not username:
        raise ChatError("Say who the private message is for: /pm <username> <text>.", reason="pm_no_recipient")
    recipient = selectors.user_get_by_username(username=username)
    if recipient is None:
        raise ChatError(f"There is no user called {username}.", reason="pm_unknown_user")
    if recipient.pk == author.pk:
        raise ChatError("You cannot send a private message to yourself.", reason="pm_to_self")
    if not body:
        raise ChatError(f"Write something after the name: /pm {recipient.username} <text>.", reason="pm_empty")
    return ParsedMessage(body=body, recipient=recipient)


def message_rate_check(*, author: User) -> None:
    """At most N stored messages per sliding window per user, counted in the shared database.

    Call it in the transaction that stores the message: it first locks the author's row (SQLite's BEGIN IMMEDIATE
    locks the whole database), so two processes cannot both count nine and both store a tenth. The count is a
    statement of its own, so that on PostgreSQL it sees what the lock's previous holder committed.
    """
    User.objects.select_for_update().filter(pk=author.pk).values_list("pk").get()
    window = settings.CHAT_RATE_LIMIT_SECONDS
    since = timezone.now() - timedelta(seconds=window)
    sent = Message.objects.filter(author=author, created_at__gte=since).count()
    if sent >= settings.CHAT_RATE_LIMIT_MESSAGES:
        raise rate_limited()


def rate_limited() -> ChatError:
    window = settings.CHAT_RATE_LIMIT_SECONDS
    return ChatError(
        f"Slow down: at most {settings.CHAT_RATE_LIMIT_MESSAGES} messages in {window:g} seconds. "
        "Your message is still in the box; send it again in a moment.",
        reason="rate_limited",
    )


def message_post(*, room: Room, author: User, text: str) -> Message | None:
    """Store what the user typed (a room or a private message) and publish it; None for blank text."""
    # No keyboard types NUL and PostgreSQL cannot store it: a frame carrying one would fail the INSERT.
    text = text.replace("\x00", "")
    if not text.strip():
        return None
    # No query: a socket keeps its room's read_only current (loaded on connect, then room.status events).
    if room.read_only:
        raise ChatError(f"#{room.name} is read-only: nobody can post here right now.", reason="room_read_only")
    member = None
    try:
        parsed = message_parse(author=author, text=text)
        # The time the flood count admits is the time stored: any window of stored times holds at most the limit.
        created_at = timezone.now()
        admitted, member = flood.message_admit(user_id=author.pk, at=created_at.timestamp())
        if not admitted:
            raise rate_limited()
        with transaction.atomic():
            if member is None:  # Redis could not count: the database does, under the author's row lock
                message_rate_check(author=author)
                created_at = None  # then stored at the INSERT, after the lock, as the count assumes
            body, recipient = parsed.body, parsed.recipient
            return message_create(room=room, author=author, body=body, recipient=recipient, created_at=created_at)
    except BaseException as error:
        if member is not None and not isinstance(error, DeliveryError):  # not stored: the admission goes too
            flood.message_forget(user_id=author.pk, member=member)
        if isinstance(error, DatabaseError):
            logger.error("message not stored", exc_info=True, extra={"reason": StorageError.reason})
            raise StorageError(
                "Your message could not be saved just now; it is still in the box. Please send it again in a moment."
            ) from error
        raise


def message_create(
    *, room: Room, author: User, body: str, recipient: User | None = None, created_at: datetime | None = None
) -> Message:
    # Mentions are looked up first: the rendering marks them, and is stored with the row in one INSERT.
    mentioned = None if recipient is not None else message_mentions_find(body=body, author=author)
    message = Message.objects.create(
        room=room,
        author=author,
        recipient=recipient,
        body=body,
        body_html=formatting.render_message(body, mention_names=[user.username for user in mentioned or []]),
        created_at=created_at or timezone.now(),
    )
    if mentioned is not None:
        message_mentions_record(message=message, users=mentioned)
    # No attachment yet (attachment_create adds one before the commit): rendering it needs no query.
    Message.attachment.related.set_cached_value(message, None)
    # Published once stored: at once in autocommit, after the commit inside a transaction.
    transaction.on_commit(partial(message_publish, message=message), robust=False)
    return message


def message_mentions_find(*, body: str, author: User) -> list[User] | None:
    """The existing users a room message names as @username; None (and no query) when it names nobody."""
    if "@" not in body:
        return None
    names = {match["username"].lower() for match in MENTION_RE.finditer(body)}
    return selectors.users_by_usernames(usernames=names - {author.username.lower()})


def message_mentions_record(*, message: Message, users: list[User]) -> None:
    """Record who the message mentions (their pages highlight it, their directories flag the room)."""
    message.mentions.set(users)
    prefetch_related_objects([message], "mentions")


def message_own_check(*, message: Message, by: User) -> None:
    """Only the author may change a message, and only within the edit window."""
    if message.author_id != by.pk:
        raise ChatError("You can only change your own messages.", reason="not_author")
    if message.retracted_at is not None:
        raise ChatError("That message was deleted.", reason="retracted")
    if message.room.read_only:
        raise ChatError(f"#{message.room.name} is read-only: nothing in it can change now.", reason="room_read_only")
    window = settings.CHAT_EDIT_WINDOW_SECONDS
    if timezone.now() - message.created_at > timedelta(seconds=window):
        raise ChatError(f"Messages can be changed for {window // 60} minutes after sending.", reason="too_late")


def message_edit(*, message: Message, by: User, body: str) -> Message:
    """Replace the text of one's own message; every open page shows the new text, marked edited."""
    message_own_check(message=message, by=by)
    body = body.strip()
    if not body:
        raise ChatError("A message cannot be empty; delete it instead.", reason="empty")
    if len(body) > settings.CHAT_MESSAGE_MAX_LENGTH:
        limit = settings.CHAT_MESSAGE_MAX_LENGTH
        raise ChatError(f"Messages can be at most {limit:,} characters; yours has {len(body):,}.", reason="too_long")
    mentioned = None if message.is_private else message_mentions_find(body=body, author=message.author)
    message.body, message.edited_at = body, timezone.now()
    message.body_html = formatting.render_message(body, mention_names=[user.username for user in mentioned or []])
    message.save(update_fields=["body", "body_html", "edited_at"])
    if not message.is_private:
        message_mentions_record(message=message, users=mentioned or [])
    transaction.on_commit(partial(message_replaced_publish, message=message))
    return message


def message_retract(*, message: Message, by: User) -> Message:
    """Delete one's own message: its text goes, a "message deleted" placeholder keeps its place."""
    message_own_check(message=message, by=by)
    message.body, message.body_html, message.retracted_at = "", "", timezone.now()
    message.reactions_summary = {}
    message.save(update_fields=["body", "body_html", "retracted_at", "reactions_summary"])
    message.mentions.clear()
    message.reactions.all().delete()
    attachment = message.attachment_or_none
    if attachment is not None:
        attachment.delete()
        Message.attachment.related.set_cached_value(message, None)
        transaction.on_commit(partial(attachment_files_delete, names=attachment_file_names([attachment])))
    transaction.on_commit(partial(message_replaced_publish, message=message))
    return message


def message_groups(*, message: Message) -> list[str]:
    """The groups that show a message: the room's, or the two people's of a private one."""
    if message.is_private:
        return [user_group(message.recipient_id), user_group(message.author_id)]
    return [message.room.group_name]


@published_best_effort
def message_replaced_publish(*, message: Message) -> None:
    """Replace an edited or retracted message in every page that shows it, rendered once."""
    event = {"type": "chat.fragment", "html": fragments.message_replaced(message=message)}
    for group in message_groups(message=message):
        group_publish(group, event)


def reaction_emoji_validate(emoji: str) -> str:
    """One of the eight emoji, also when typed without the variation selector (a bare heart)."""
    emoji = emoji.strip()
    for allowed in REACTION_EMOJI:
        if emoji in (allowed, allowed.removesuffix("\ufe0f")):
            return allowed
    raise ChatError(f"React with one of {' '.join(REACTION_EMOJI)}.", reason="bad_emoji")


def reaction_toggle(*, message: Message, user: User, emoji: str) -> Message:
    """Give the user's reaction with this emoji to the message, or take it back; every open page sees the counts."""
    emoji = reaction_emoji_validate(emoji)
    if message.retracted_at is not None:
        raise ChatError("That message was deleted.", reason="retracted")
    if message.room.read_only:
        raise ChatError(f"#{message.room.name} is read-only: nothing in it can change now.", reason="room_read_only")
    with transaction.atomic():
        # The message's row is the lock: two toggles at once cannot both rewrite its summary from stale rows.
        Message.objects.select_for_update().filter(pk=message.pk).values_list("pk").get()
        taken_back, _ = Reaction.objects.filter(message=message, user=user, emoji=emoji).delete()
        if not taken_back:
            Reaction.objects.create(message=message, user=user, emoji=emoji)
        summary: dict[str, list[int]] = {}
        for given, user_id in Reaction.objects.filter(message=message).order_by("id").values_list("emoji", "user_id"):
            summary.setdefault(given, []).append(user_id)
        Message.objects.filter(pk=message.pk).update(reactions_summary=summary)
        message.reactions_summary = summary
        transaction.on_commit(partial(reactions_publish, message=message))
    return message


@published_best_effort
def reactions_publish(*, message: Message) -> None:
    """Replace the message's reactions in every page that shows it, rendered once."""
    event = {"type": "chat.fragment", "html": fragments.reactions(message=message)}
    for group in message_groups(message=message):
        group_publish(group, event)


def attachment_rate_check(*, author: User) -> None:
    """At most N uploads per sliding window per user; call it in the transaction that stores (it locks the author)."""
    User.objects.select_for_update().filter(pk=author.pk).values_list("pk").get()
    window = settings.CHAT_ATTACHMENT_RATE_SECONDS
    since = timezone.now() - timedelta(seconds=window)
    sent = Attachment.objects.filter(message__author=author, created_at__gte=since).count()
    if sent >= settings.CHAT_ATTACHMENT_RATE_LIMIT:
        raise ChatError(
            f"Slow down: at most {settings.CHAT_ATTACHMENT_RATE_LIMIT} files in {window:g} seconds. "
            "Try again in a moment.",
            reason="upload_rate_limited",
        )


def attachment_size_check(*, size: int | None) -> None:
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    if not size:
        raise ChatError("That file is empty: choose a file to share.", reason="upload_empty")
    if size > limit:
        raise ChatError(
            f"Files can be at most {limit / 1024 / 1024:g} MiB; that one is larger.", reason="upload_too_large"
        )


def attachment_create(
    *, room: Room, author: User, upload: UploadedFile | None, caption: str = "", recipient: User | None = None
) -> Message:
    """Share a file in a room (or privately with `recipient`) as a message, shown live like any other.

    Images get a thumbnail, made once here. Who may then fetch the file follows who may read the message
    (selectors.attachment_get_visible), so a conversation page can share files through this as well.
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
            attachment_rate_check(author=author)
            message = message_create(room=room, author=author, body=caption, recipient=recipient)
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


def attachment_file_names(shared: Iterable[Attachment]) -> list[str]:
    """The storage names of these attachments' files and thumbnails."""
    return [name for attachment in shared for name in (attachment.file.name, attachment.thumbnail.name) if name]


def attachment_files_delete(*, names: list[str]) -> None:
    """Remove files from the storage once the rows that named them are gone; a failure is logged, not raised."""
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # the storage's errors depend on its backend (disk, S3)
            logger.warning("attachment file not deleted", exc_info=True, extra={"file": name})


def room_mark_read(*, room: Room, user: User, latest_id: int | None = None) -> int | None:
    """Record that the user has read the room to its newest message; the previous mark (None: first visit).

    `latest_id`: the room's newest message id when the caller already knows it (a socket's shared log).
    """
    latest = selectors.room_latest_message_id(room=room) if latest_id is None else latest_id
    visit, created = RoomVisit.objects.get_or_create(room=room, user=user, defaults={"last_read_id": latest})
    if not created and visit.last_read_id != latest:
        RoomVisit.objects.filter(pk=visit.pk).update(last_read_id=latest)
    return None if created else visit.last_read_id


def message_publish(*, message: Message) -> None:
    """Render the message once and send it to the room, or to the two people of a private message."""
    html = fragments.message_appended(message=message)
    groups = message_groups(message=message)
    event = {"type": "chat.fragment", "html": html, "message_id": message.pk}
    try:
        for group in groups:
            group_publish(group, event)
        if not message.is_private:
            from chat.hub import directory_news_note  # the hub publishes through these services

            # Coalesced per room and second by this process's hub; one's own message is not news to one's directory.
            news = partial(directory_news_note, room=message.room, message_id=message.pk, author_id=message.author_id)
            async_to_sync(news)(last_message_at=message.created_at)
            flag = {"type": "chat.fragment", "html": fragments.directory_mentioned(room=message.room)}
            for user_id in message.mentioned_ids:
                group_publish(directory_user_group(user_id), flag)
    except Exception as error:  # the layer's errors depend on its backend (Redis, in-memory)
        raise DeliveryError(
            "Your message is saved, but it could not be delivered live right now; "
            "others will see it when their page reconnects."
        ) from error


def message_delete(*, message: Message, by: User) -> None:
    """Delete one message (moderation) and remove it from every page that shows it, live."""
    message_delete_many(messages=Message.objects.filter(pk=message.pk), by=by)


def message_delete_many(*, messages: QuerySet[Message], by: User) -> int:
    """Delete messages and, once committed, remove them live: one frame per room or user group."""
    doomed = list(messages.select_related("room"))
    if not doomed:
        return 0
    removals: dict[str, list[int]] = defaultdict(list)
    for message in doomed:
        groups = (
            [user_group(message.recipient_id), user_group(message.author_id)]
            if message.is_private
            else [message.room.group_name]
        )
        for group in groups:
            removals[group].append(message.pk)
    with transaction.atomic():
        files = attachment_file_names(Attachment.objects.filter(message__in=[message.pk for message in doomed]))
        Message.objects.filter(pk__in=[message.pk for message in doomed]).delete()
        transaction.on_commit(partial(messages_removed_publish, removals=dict(removals)))
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


def messages_removed_publish(*, removals: dict[str, list[int]]) -> None:
    """Tell each group's open pages to drop those messages; a page that misses it reloads its log on reconnect."""
    for group, message_ids in removals.items():
        html = fragments.messages_removed(message_ids=message_ids)
        try:
            group_publish(group, {"type": "chat.fragment", "html": html})
        except Exception:  # the deletion is committed; open pages catch up when they reconnect
            logger.warning("message removal not delivered live", exc_info=True, extra={"group": group})


def room_read_only_set(*, room: Room, read_only: bool, by: User) -> Room:
    """Close a room for posting (or open it again) and show its status live on every open page of it."""
    Room.objects.filter(pk=room.pk).update(read_only=read_only)
    room.read_only = read_only
    transaction.on_commit(partial(room_status_publish, room=room))
    logger.info("room read-only set", extra={"room": room.name, "read_only": read_only, "by": by.username})
    return room


def room_status_publish(*, room: Room) -> None:
    """Tell every socket of the room whether it is read-only, with the line its page shows."""
    event = {"type": "room.status", "read_only": room.read_only, "html": fragments.room_status(room=room)}
    try:
        group_publish(room.group_name, event)
    except Exception:  # stored: sockets read it again when they reconnect (until then they still accept posts)
        logger.warning("room status not delivered live", exc_info=True, extra={"room": room.name})
