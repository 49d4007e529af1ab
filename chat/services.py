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
    Membership,
    Message,
    Reaction,
    Room,
    direct_room_name,
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


class NotFound(ChatError):
    """No such conversation for this reader: it does not exist, or they may not read it (never said which)."""

    reason = "not_found"


def room_get_or_create(*, name: str, by: User | None = None) -> Room:
    """The room of that name in any casing, created with this casing (and `by` as its creator) when new."""
    room_name_validate(name)
    room = selectors.room_get(name=name)
    if room is not None:
        return room
    try:
        with transaction.atomic():
            room = Room.objects.create(name=name, created_by=by)
            transaction.on_commit(partial(room_created_publish, room=room))
            return room
    except IntegrityError:  # created by someone else a moment ago
        return selectors.room_get(name=name)


def direct_room_get_or_create(*, user: User, peer: User) -> Room:
    """The two people's conversation, with both as members from the start; as `user` sees it."""
    room = selectors.direct_room_get(user=user, peer=peer)
    if room is None:
        try:
            with transaction.atomic():
                room = Room.objects.create(name=direct_room_name(user.pk, peer.pk), kind=Room.Kind.DIRECT)
                Membership.objects.bulk_create([Membership(room=room, user=member) for member in (user, peer)])
        except IntegrityError:  # opened by the other one a moment ago
            room = selectors.direct_room_get(user=user, peer=peer)
        room.peer = peer
    return room


def conversation_open(*, user: User, room_name: str | None = None, username: str | None = None) -> Room:
    """The conversation a URL names for this reader, or NotFound when they may not read it.

    `room_name`: a room (created when new, the reader its creator); `username`: the reader's direct conversation
    with that person. Every page, fragment view and socket of a conversation starts here.
    """
    if username is not None:
        peer = selectors.user_get_by_username(username=username)
        if peer is None or peer.pk == user.pk or not peer.is_active:
            raise NotFound("There is no such conversation.")
        return direct_room_get_or_create(user=user, peer=peer)
    room = room_get_or_create(name=room_name or "", by=user)
    if not selectors.room_readable(room=room, user=user):
        raise NotFound("There is no such room.")
    return room


def room_manage_check(*, room: Room, by: User) -> None:
    """Only a room's creator, or staff, may make it private or add its members; a direct conversation, nobody."""
    if room.is_direct:
        raise NotFound("There is no such room.")
    if not (by.is_staff or (room.created_by_id is not None and room.created_by_id == by.pk)):
        raise ChatError(f"Only the person who created #{room.name} can change who is in it.", reason="not_creator")


def conversation_mark_read(*, room: Room, user: User, latest_id: int | None = None, join: bool = False) -> int | None:
    """Record that the user has read the conversation to its newest message; the previous mark (None: not a member).

    `join`: a page opening the room joins it (the sidebars of the user's other pages show it). Otherwise only a
    member's mark moves: a page left open after leaving the room does not join it again when it closes.
    `latest_id`: the newest message id when the caller already knows it (a socket's shared log).
    """
    latest = selectors.room_latest_message_id(room=room) if latest_id is None else latest_id
    if join:
        membership, created = Membership.objects.get_or_create(room=room, user=user, defaults={"last_read_id": latest})
        if created:
            transaction.on_commit(partial(sidebar_joined_publish, room=room, user=user))
            return None
    else:
        membership = Membership.objects.filter(room=room, user=user).first()
        if membership is None:
            return None
    if membership.last_read_id != latest:
        Membership.objects.filter(pk=membership.pk).update(last_read_id=latest)
    return membership.last_read_id


def room_leave(*, room: Room, user: User) -> None:
    """Take the room off the user's sidebar; a private room's pages and sockets are then closed to them."""
    if room.is_direct:
        raise NotFound("There is no such room.")
    Membership.objects.filter(room=room, user=user).delete()
    transaction.on_commit(partial(sidebar_left_publish, room=room, user_ids=[user.pk]))
    if room.is_private:
        transaction.on_commit(partial(room_access_publish, room=room))


def room_privacy_set(*, room: Room, private: bool, by: User) -> Room:
    """Make a room private (only its members see it anywhere) or public again; its creator or staff only.

    Whoever has joined it stays a member; its creator is one. Sockets of anyone else close, and the directories
    drop it (or list it again).
    """
    room_manage_check(room=room, by=by)
    kind = Room.Kind.PRIVATE if private else Room.Kind.PUBLIC
    if room.kind == kind:
        return room
    Room.objects.filter(pk=room.pk).update(kind=kind)
    room.kind = kind
    if private:
        if room.created_by is not None:
            room_member_join(room=room, user=room.created_by)
        transaction.on_commit(partial(room_access_publish, room=room))
        transaction.on_commit(partial(directory_room_removed_publish, room=room))
    else:
        transaction.on_commit(partial(room_created_publish, room=room))
    logger.info("room privacy set", extra={"room": room.name, "private": private, "by": by.username})
    return room


def room_member_join(*, room: Room, user: User) -> bool:
    """Make the user a member (their sidebars show the room at once); False when they were one already."""
    latest = selectors.room_latest_message_id(room=room)
    _, created = Membership.objects.get_or_create(room=room, user=user, defaults={"last_read_id": latest})
    if created:
        transaction.on_commit(partial(sidebar_joined_publish, room=room, user=user))
    return created


def room_member_add(*, room: Room, username: str, by: User) -> User:
    """Add a person to a room by username (the creator or staff): for a private room, the right to read it."""
    room_manage_check(room=room, by=by)
    member = selectors.user_get_by_username(username=username.strip().lstrip("@"))
    if member is None or not member.is_active:
        raise ChatError(f"There is no user called {username.strip()[:150]}.", reason="unknown_user")
    if not room_member_join(room=room, user=member):
        raise ChatError(f"{member.username} is already a member of #{room.name}.", reason="already_member")
    logger.info("room member added", extra={"room": room.name, "member": member.username, "by": by.username})
    return member


def room_member_remove(*, room: Room, username: str, by: User) -> User:
    """Take a person out of a room (the creator or staff): out of their sidebar, and of a private room altogether."""
    room_manage_check(room=room, by=by)
    member = selectors.user_get_by_username(username=username.strip().lstrip("@"))
    if member is None or not Membership.objects.filter(room=room, user=member).exists():
        raise ChatError(f"{username.strip()[:150]} is not a member of #{room.name}.", reason="not_member")
    if member.pk == room.created_by_id:
        raise ChatError(f"{member.username} created #{room.name}: only they can leave it.", reason="creator")
    Membership.objects.filter(room=room, user=member).delete()
    room_members_changed(room=room, added=[], removed_ids=[member.pk])
    logger.info("room member removed", extra={"room": room.name, "member": member.username, "by": by.username})
    return member


def room_members_changed(*, room: Room, added: Iterable[User], removed_ids: Iterable[int]) -> None:
    """Memberships changed outside the services (the admin): sidebars and a private room's sockets follow."""
    for user in added:
        transaction.on_commit(partial(sidebar_joined_publish, room=room, user=user))
    removed_ids = list(removed_ids)
    if removed_ids:
        transaction.on_commit(partial(sidebar_left_publish, room=room, user_ids=removed_ids))
    if room.is_private:
        transaction.on_commit(partial(room_access_publish, room=room))


@published_best_effort
def room_access_publish(*, room: Room) -> None:
    """Tell the room's sockets who may still read it: the others close with 4003 (chat.consumers)."""
    member_ids = list(Membership.objects.filter(room=room).values_list("user_id", flat=True))
    event = {"type": "room.access", "members_only": room.kind != Room.Kind.PUBLIC, "member_ids": member_ids}
    group_publish(room.group_name, event)


@published_best_effort
def directory_room_removed_publish(*, room: Room) -> None:
    group_publish(DIRECTORY_GROUP, {"type": "chat.fragment", "html": fragments.directory_room_removed(room=room)})


def sidebar_publish(*, user_id: int, event: dict) -> None:
    """To every open page of one user: room and direct-message pages, and directories."""
    for group in (user_group(user_id), directory_user_group(user_id)):
        group_publish(group, event)


@published_best_effort
def sidebar_joined_publish(*, room: Room, user: User, unread: int = 0) -> None:
    """Show a conversation the user is now in on the sidebars of their open pages, which then hear its news."""
    if room.is_direct and room.peer is None:
        room.peer = selectors.direct_peer(room=room, user=user)
    html = fragments.sidebar_entry_added(room=room, unread=unread)
    # Not "group": group_publish names there the group an event was sent to.
    event = {"type": "sidebar.joined", "room_id": room.pk, "sidebar_group": room.sidebar_group, "unread": unread}
    event["html"] = html
    sidebar_publish(user_id=user.pk, event=event)


@published_best_effort
def sidebar_left_publish(*, room: Room, user_ids: list[int]) -> None:
    event = {"type": "sidebar.left", "room_id": room.pk, "html": fragments.sidebar_entry_removed(room=room)}
    for user_id in user_ids:
        sidebar_publish(user_id=user_id, event=event)


@published_best_effort
def room_created_publish(*, room: Room) -> None:
    """Show a new (or newly public) room at the top of every open directory's first page."""
    html = fragments.directory_room_added(room=room)
    group_publish(DIRECTORY_GROUP, {"type": "chat.fragment", "html": html, "room_added": True})


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
            if parsed.recipient is not None:  # /pm: a message of the two people's conversation, wherever typed
                room = direct_room_get_or_create(user=author, peer=parsed.recipient)
            return message_create(room=room, author=author, body=parsed.body, created_at=created_at)
    except BaseException as error:
        if member is not None and not isinstance(error, DeliveryError):  # not stored: the admission goes too
            flood.message_forget(user_id=author.pk, member=member)
        if isinstance(error, DatabaseError):
            logger.error("message not stored", exc_info=True, extra={"reason": StorageError.reason})
            raise StorageError(
                "Your message could not be saved just now; it is still in the box. Please send it again in a moment."
            ) from error
        raise


def message_create(*, room: Room, author: User, body: str, created_at: datetime | None = None) -> Message:
    """Store a message of a conversation (a direct one's names the other person as its recipient)."""
    recipient = None
    if room.is_direct:
        recipient = room.peer if room.peer is not None else selectors.direct_peer(room=room, user=author)
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
    # The directory and the sidebars order by it; a direct conversation's first message puts it in both sidebars.
    first = room.is_direct and Room.objects.filter(pk=room.pk, last_message_at=None).update(
        last_message_at=message.created_at
    )
    if not first:
        Room.objects.filter(pk=room.pk).update(last_message_at=message.created_at)
    room.last_message_at = message.created_at
    if mentioned is not None:
        message_mentions_record(message=message, users=mentioned)
    # No attachment yet (attachment_create adds one before the commit): rendering it needs no query.
    Message.attachment.related.set_cached_value(message, None)
    Message.room.field.set_cached_value(message, room)
    # Published once stored: at once in autocommit, after the commit inside a transaction.
    transaction.on_commit(partial(message_publish, message=message, first=bool(first)), robust=False)
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


def message_groups(*, message: Message) -> list[tuple[str, bool]]:
    """The groups that show a message, each with whether it shows there as a whisper: the conversation's pages,
    and for a direct conversation's message the two people's other pages too."""
    groups = [(message.room.group_name, False)]
    if message.is_private:
        groups += [(user_group(message.recipient_id), True), (user_group(message.author_id), True)]
    return groups


def conversation_event(*, message: Message, whisper: bool, html: str) -> dict[str, object]:
    """A frame for a conversation's pages, or a whisper that its own pages skip (they have it already)."""
    return {"type": "chat.fragment", "html": html, **({"whisper_room_id": message.room_id} if whisper else {})}


@published_best_effort
def message_replaced_publish(*, message: Message) -> None:
    """Replace an edited or retracted message in every page that shows it, rendered once (and once as a whisper)."""
    for group, whisper in message_groups(message=message):
        html = fragments.message_replaced(message=message, whisper=whisper)
        group_publish(group, conversation_event(message=message, whisper=whisper, html=html))


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
    html = fragments.reactions(message=message)
    for group, whisper in message_groups(message=message):
        group_publish(group, conversation_event(message=message, whisper=whisper, html=html))


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


def attachment_create(*, room: Room, author: User, upload: UploadedFile | None, caption: str = "") -> Message:
    """Share a file in a conversation as a message, shown live like any other.

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
            attachment_rate_check(author=author)
            message = message_create(room=room, author=author, body=caption)
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


def message_publish(*, message: Message, first: bool = False) -> None:
    """Render the message once and send it to its conversation's pages (and a direct one's as a whisper to the two
    people's other pages); then the news to the members' sidebars and, for a public room, to the directories.

    `first`: the first message of a direct conversation, which puts it in both people's sidebars.
    """
    room = message.room
    try:
        for group, whisper in message_groups(message=message):
            html = fragments.message_appended(message=message, whisper=whisper)
            event = {**conversation_event(message=message, whisper=whisper, html=html), "message_id": message.pk}
            group_publish(group, event)
        if first:
            for user, peer in ((message.author, message.recipient), (message.recipient, message.author)):
                unread = 0 if user.pk == message.author_id else 1
                shown = Room(pk=room.pk, name=room.name, kind=room.kind, last_message_at=room.last_message_at)
                shown.peer = peer
                sidebar_joined_publish(room=shown, user=user, unread=unread)
        else:
            news = {
                "type": "sidebar.news",
                "room_id": room.pk,
                "message_id": message.pk,
                "author_id": message.author_id,
                "mentioned": message.mentioned_ids,
            }
            group_publish(room.sidebar_group, news)
        if room.kind == Room.Kind.PUBLIC:
            from chat.hub import directory_news_note  # the hub publishes through these services

            # Coalesced per room and second by this process's hub; one's own message is not news to one's directory.
            news = partial(directory_news_note, room=room, message_id=message.pk, author_id=message.author_id)
            async_to_sync(news)(last_message_at=message.created_at)
            flag = {"type": "chat.fragment", "html": fragments.directory_mentioned(room=room)}
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
        for group, _whisper in message_groups(message=message):
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
