"""Writes: the rules of the chat. Each action stores first, then publishes once on commit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from chat import fragments, selectors
from chat.models import ROOM_NAME_RE, Connection, Message, Room

PRIVATE_COMMAND_RE = re.compile(r"^/pm(?:\s+(?P<username>\S+))?(?:\s+(?P<body>.*))?$", re.DOTALL)


class ChatError(Exception):
    """A refusal that the user sees as a sentence in #chat-error."""


class InvalidRoomName(ChatError):
    pass


class DeliveryError(ChatError):
    """The message is stored but the channel layer could not carry it live."""


# Every open room directory page.
DIRECTORY_GROUP = "directory"


def user_group(user_id: int) -> str:
    """The channel-layer group of every open socket of one user, in any room."""
    return f"user_{user_id}"


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


def room_created_publish(*, room: Room) -> None:
    """Show a new room at the top of every open directory."""
    html = fragments.directory_room_added(room=room)
    async_to_sync(get_channel_layer().group_send)(DIRECTORY_GROUP, {"type": "chat.fragment", "html": html})


@dataclass(frozen=True)
class ParsedMessage:
    body: str
    recipient: User | None = None


def message_parse(*, author: User, text: str) -> ParsedMessage:
    """Split `/pm <username> <text>` from a room message, refusing what cannot be sent."""
    text = text.strip()
    limit = settings.CHAT_MESSAGE_MAX_LENGTH
    if len(text) > limit:
        raise ChatError(f"Messages can be at most {limit:,} characters; yours has {len(text):,}.")
    command = PRIVATE_COMMAND_RE.fullmatch(text)
    if command is None:
        return ParsedMessage(body=text)
    username, body = command["username"], (command["body"] or "").strip()
    if not username:
        raise ChatError("Say who the private message is for: /pm <username> <text>.")
    recipient = selectors.user_get_by_username(username=username)
    if recipient is None:
        raise ChatError(f"There is no user called {username}.")
    if recipient.pk == author.pk:
        raise ChatError("You cannot send a private message to yourself.")
    if not body:
        raise ChatError(f"Write something after the name: /pm {recipient.username} <text>.")
    return ParsedMessage(body=body, recipient=recipient)


def message_rate_check(*, author: User) -> None:
    """At most N stored messages per sliding window per user, counted in the shared database."""
    window = settings.CHAT_RATE_LIMIT_SECONDS
    since = timezone.now() - timedelta(seconds=window)
    sent = Message.objects.filter(author=author, created_at__gte=since).count()
    if sent >= settings.CHAT_RATE_LIMIT_MESSAGES:
        raise ChatError(
            f"Slow down: at most {settings.CHAT_RATE_LIMIT_MESSAGES} messages in {window:g} seconds. "
            "Your message is still in the box; send it again in a moment."
        )


def message_post(*, room: Room, author: User, text: str) -> Message | None:
    """Store what the user typed (a room or a private message) and publish it; None for blank text."""
    # No keyboard types NUL and PostgreSQL cannot store it: a frame carrying one would fail the INSERT.
    text = text.replace("\x00", "")
    if not text.strip():
        return None
    parsed = message_parse(author=author, text=text)
    message_rate_check(author=author)
    return message_create(room=room, author=author, body=parsed.body, recipient=parsed.recipient)


def message_create(*, room: Room, author: User, body: str, recipient: User | None = None) -> Message:
    message = Message.objects.create(room=room, author=author, recipient=recipient, body=body)
    # Published once stored: at once in autocommit, after the commit inside a transaction.
    transaction.on_commit(partial(message_publish, message=message), robust=False)
    return message


def message_publish(*, message: Message) -> None:
    """Render the message once and send it to the room, or to the two people of a private message."""
    html = fragments.message_appended(message=message)
    if message.is_private:
        groups = [user_group(message.recipient_id), user_group(message.author_id)]
    else:
        groups = [message.room.group_name]
    event = {"type": "chat.fragment", "html": html, "message_id": message.pk}
    try:
        for group in groups:
            async_to_sync(get_channel_layer().group_send)(group, event)
        if not message.is_private:
            activity = fragments.directory_activity(room=message.room, last_message_at=message.created_at)
            async_to_sync(get_channel_layer().group_send)(DIRECTORY_GROUP, {"type": "chat.fragment", "html": activity})
    except Exception as error:  # the layer's errors depend on its backend (Redis, in-memory)
        raise DeliveryError(
            "Your message is saved, but it could not be delivered live right now; "
            "others will see it when their page reconnects."
        ) from error


def presence_join(*, room: Room, user: User, channel_name: str, server: str) -> None:
    """Count one more connection of the user to the room and publish the room's online list."""
    with transaction.atomic():
        Connection.objects.update_or_create(
            channel_name=channel_name,
            defaults={"room": room, "user": user, "server": server, "seen_at": timezone.now()},
        )
        transaction.on_commit(partial(online_users_publish, room_ids=[room.pk]))


def presence_leave(*, channel_name: str) -> None:
    """Forget one connection and publish the room's online list."""
    with transaction.atomic():
        room_ids = list(Connection.objects.filter(channel_name=channel_name).values_list("room_id", flat=True))
        Connection.objects.filter(channel_name=channel_name).delete()
        transaction.on_commit(partial(online_users_publish, room_ids=room_ids))


def presence_refresh(*, server: str, sole_server: bool = False) -> None:
    """Mark this process's connections alive and remove those of processes that died."""
    now = timezone.now()
    Connection.objects.filter(server=server).update(seen_at=now)
    stale = Connection.objects.filter(seen_at__lt=selectors.presence_cutoff())
    if sole_server:
        # With the in-memory layer this process is the only one: any other server's rows are dead.
        stale = Connection.objects.exclude(server=server) | stale
    with transaction.atomic():
        room_ids = sorted(set(stale.values_list("room_id", flat=True)))
        if not room_ids:
            return
        stale.delete()
        transaction.on_commit(partial(online_users_publish, room_ids=room_ids))


def online_users_publish(*, room_ids: list[int]) -> None:
    """Render each room's online list once and send it to everyone in the room, and its count to the directory."""
    layer = get_channel_layer()
    for room in Room.objects.filter(pk__in=room_ids):
        users = selectors.room_online_users(room=room)
        html = fragments.online_users(room=room, users=users)
        async_to_sync(layer.group_send)(room.group_name, {"type": "chat.fragment", "html": html})
        count = fragments.directory_online_count(room=room, online_count=len(users))
        async_to_sync(layer.group_send)(DIRECTORY_GROUP, {"type": "chat.fragment", "html": count})
