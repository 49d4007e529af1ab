"""Messages: what a person typed, parsed, stored, edited and retracted; published to every page on commit."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone
from django_tasks import task

from accounts.models import User
from chat import broadcasts, flood, formatting, selectors
from chat.errors import ChatError, DeliveryError, StorageError
from chat.models import MENTION_RE, Message, Room
from chat.services.bots import bot_answer_fetch, message_bots
from chat.services.emails import email_notices_record
from chat.services.rooms import direct_room_get_or_create
from chat.services.storage import attachment_file_names, attachment_files_delete
from chat.services.threads import thread_parent_check, thread_reply_record

logger = logging.getLogger(__name__)

# A line that starts with a slash and a word names a command (in any casing): `/pm bob hi`, `/PM bob hi`.
COMMAND_RE = re.compile(r"^/(?P<name>[^\s/]+)(?:\s+(?P<username>\S+))?(?:\s+(?P<body>.*))?$", re.DOTALL)
COMMANDS_HELP = "/pm <username> <text> sends a private message"


@dataclass(frozen=True)
class ParsedMessage:
    body: str
    recipient: User | None = None


def message_parse(*, author: User, text: str) -> ParsedMessage:
    """Split a command from a message, refusing what cannot be sent.

    A line naming no known command is refused, not posted: a mistyped `/pn bob secret` must not reach the room.
    Two slashes send one: `//etc/hosts` posts `/etc/hosts`.
    """
    text = text.strip()
    limit = settings.CHAT_MESSAGE_MAX_LENGTH
    if len(text) > limit:
        raise ChatError(f"Messages can be at most {limit:,} characters; yours has {len(text):,}.", reason="too_long")
    if text.startswith("//"):
        return ParsedMessage(body=text[1:])
    command = COMMAND_RE.fullmatch(text)
    if command is None:
        return ParsedMessage(body=text)
    name = command["name"]
    if name.lower() != "pm":
        raise ChatError(
            f"There is no command /{name[:30]}: {COMMANDS_HELP}. Nothing was sent. "
            "To start a message with a slash, type two: //",
            reason="unknown_command",
        )
    username, body = command["username"], (command["body"] or "").strip()
    if not username:
        raise ChatError("Say who the private message is for: /pm <username> <text>.", reason="pm_no_recipient")
    recipient = selectors.user_get_by_username(username=username)
    # Nobody can open a conversation with a deactivated account either (services.rooms.conversation_open).
    if recipient is None or not recipient.is_active:
        raise ChatError(f"There is no user called {username[:150]}.", reason="pm_unknown_user")
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


def message_post(
    *, room: Room, author: User, text: str, thread: object = None, key: str | None = None
) -> Message | None:
    """Store what the user typed (a room or a private message, or a reply in the thread of the message `thread`
    names) and publish it; None for blank text, or for a text this author already sent under the form's `key` (the
    same frame again, after an answer lost with its connection: stored once)."""
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
            parent = None
            if thread not in (None, ""):
                if parsed.recipient is not None:
                    raise ChatError(
                        "A reply cannot be a private message: /pm works in the conversation.", reason="pm_reply"
                    )
                parent = thread_parent_check(room=room, thread=thread)
            if parsed.recipient is not None:  # /pm: a message of the two people's conversation, wherever typed
                room = direct_room_get_or_create(user=author, peer=parsed.recipient)
            message = message_create(
                room=room, author=author, body=parsed.body, created_at=created_at, parent=parent, key=key
            )
        if message is None and member is not None:  # already stored: this frame is not counted twice either
            flood.message_forget(user_id=author.pk, member=member)
        return message
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
    *,
    room: Room,
    author: User,
    body: str,
    created_at: datetime | None = None,
    parent: Message | None = None,
    key: str | None = None,
) -> Message | None:
    """Store a message of a conversation (a direct one's names the other person as its recipient), or a reply in
    the thread of `parent`; None, with nothing stored or published, when `key` finds it already stored."""
    recipient = None
    if room.is_direct:
        recipient = room.peer if room.peer is not None else selectors.direct_peer(room=room, user=author)
    # Mentions are looked up first: the rendering marks them, and is stored with the row in one INSERT.
    mentioned = None if recipient is not None else message_mentions_find(body=body, author=author)
    message = message_insert(
        key=key,
        room=room,
        author=author,
        recipient=recipient,
        body=body,
        body_html=formatting.render_message(body, mention_names=[user.username for user in mentioned or []]),
        created_at=created_at or timezone.now(),
        parent=parent,
    )
    if message is None:
        return None
    # The directory and the sidebars order by it; a direct conversation's first message puts it in both sidebars.
    first = room.is_direct and Room.objects.filter(pk=room.pk, last_message_at=None).update(
        last_message_at=message.created_at
    )
    if not first:
        Room.objects.filter(pk=room.pk).update(last_message_at=message.created_at)
    room.last_message_at = message.created_at
    if mentioned is not None:
        message_mentions_add(message=message, users=mentioned)
    if parent is not None:
        thread_reply_record(reply=message, mentioned_ids=[user.pk for user in mentioned or []])
    # Who it notifies gets it emailed if they have not read it a while later (one query when that is nobody).
    email_notices_record(message=message, mentioned_ids=[user.pk for user in mentioned or []])
    # A bot it names, or the one it is sent to, gets it at its webhook from the worker (no query for no bot).
    for bot_user_id in message_bots(message=message, mentioned=mentioned):
        bot_message_deliver.enqueue(message.pk, bot_user_id)
    # No attachment yet (attachment_create adds one before the commit): rendering it needs no query.
    Message.attachment.related.set_cached_value(message, None)
    Message.room.field.set_cached_value(message, room)
    # Published once stored: at once in autocommit, after the commit inside a transaction.
    transaction.on_commit(partial(broadcasts.message_posted, message=message, first=bool(first)), robust=False)
    return message


def message_insert(*, key: str | None, **fields: object) -> Message | None:
    """INSERT the message under its form's `key`; None when its author stored this text under that key already. The
    same key on another text (typed over before the fresh form came) is stored too, without the key."""
    if key is None:
        return Message.objects.create(**fields)
    try:
        with transaction.atomic():  # a savepoint: the clash leaves the caller's transaction usable
            return Message.objects.create(client_key=key, **fields)
    except IntegrityError:
        if Message.objects.filter(author=fields["author"], client_key=key, body=fields["body"]).exists():
            logger.info("message sent again", extra={"reason": "duplicate_key"})
            return None
        return Message.objects.create(**fields)


def message_mentions_find(*, body: str, author: User) -> list[User] | None:
    """The existing users a room message names as @username; None (and no query) when it names nobody."""
    if "@" not in body:
        return None
    names = {match["username"].lower() for match in MENTION_RE.finditer(body)}
    return selectors.users_by_usernames(usernames=names - {author.username.lower()})


def message_mentions_add(*, message: Message, users: list[User]) -> None:
    """Record who a new message mentions: one INSERT (nothing to replace), and the users kept as its mentions."""
    through = Message.mentions.through
    through.objects.bulk_create([through(message_id=message.pk, user_id=user.pk) for user in users])
    # As prefetch_related leaves them: message.mentions.all() answers from these, without a query.
    mentions = message.mentions.all()
    mentions._result_cache, mentions._prefetch_done = list(users), True
    message._prefetched_objects_cache = {"mentions": mentions}


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
    transaction.on_commit(partial(broadcasts.message_replaced, message=message))
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
    transaction.on_commit(partial(broadcasts.message_replaced, message=message))
    return message


@task()
def bot_message_deliver(message_id: int, bot_user_id: int) -> None:
    """The worker's task: send the message to the bot's webhook and post its answer, if any, as the bot's reply where
    the message was (chat.services.bots). Once: a call that failed, or an answer refused, is logged, not retried."""
    answer = bot_answer_fetch(message_id=message_id, bot_user_id=bot_user_id)
    if answer is None:
        return
    try:
        message_post(room=answer.room, author=answer.bot, text=answer.text, thread=answer.thread)
    except DeliveryError:  # stored, but the open pages may not have it live: they will on their next load
        logger.warning(
            "bot %s: answer stored, not delivered live", answer.bot.username, extra={"bot": answer.bot.username}
        )
    except ChatError as error:
        logger.warning(
            "bot %s: answer not posted (%s)", answer.bot.username, error.reason, extra={"bot": answer.bot.username}
        )
