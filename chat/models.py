from __future__ import annotations

import copy
import re
import uuid
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.db.models.functions import Lower
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

ROOM_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,50}$")
# @username, as Django's username validator allows them, not ending in a full stop.
MENTION_RE = re.compile(r"(?<![\w@.+-])@(?P<username>[\w.+-]*[\w+-])")
# The reactions anyone can give, in the order a message shows them (docs/contract.md, "reactions").
REACTION_EMOJI = (
    "\N{THUMBS UP SIGN}",
    "\N{HEAVY BLACK HEART}\ufe0f",
    "\N{FACE WITH TEARS OF JOY}",
    "\N{PARTY POPPER}",
    "\N{FACE WITH OPEN MOUTH}",
    "\N{CRYING FACE}",
    "\N{EYES}",
    "\N{WHITE HEAVY CHECK MARK}",
)


def direct_room_name(user_id: int, other_id: int) -> str:
    """The name of two people's conversation: the same whoever opens it, and no room name can take it ("~")."""
    low, high = sorted((user_id, other_id))
    return f"~{low}-{high}"


class Room(models.Model):
    """A conversation: a public room, a private room of its members, or two people's direct conversation.

    One table with a kind, as Campfire keeps open, closed and direct rooms: every kind shares messages, history,
    search, unread marks and sockets. Names compare case-insensitively and keep the casing of their creator.
    """

    class Kind(models.TextChoices):
        PUBLIC = "public", "public: anyone can read it"
        PRIVATE = "private", "private: only its members"
        DIRECT = "direct", "direct: two people"

    # A direct conversation's name is direct_room_name() of its two people: never shown, never typed.
    name = models.CharField(max_length=50)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PUBLIC)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        related_name="rooms_created",
        null=True,
        blank=True,
        help_text="Who may make it private and add members (staff may too).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Kept with each message: the directory orders by it without looking at the messages.
    last_message_at = models.DateTimeField(null=True, blank=True)
    # Set by a moderator in the admin: the room can be read but nobody can post to it.
    read_only = models.BooleanField(default=False, help_text="Nobody can post; the room page says so.")

    # The other person of a direct conversation, as one reader sees it (set by chat.selectors, not stored).
    peer: models.Model | None = None
    # In a direct conversation's fragment rendered for no reader (one render for both people), what its links say
    # in place of the other person's name; `for_reader` puts each reader's in (chat.templatetags.conversations).
    # User text never holds it: a body's "<" is always escaped.
    PEER_PLACEHOLDER = "<peer>"

    class Meta:
        constraints = [models.UniqueConstraint(Lower("name"), name="chat_room_name_ci_unique")]
        indexes = [models.Index(fields=["kind", "-last_message_at"], name="chat_room_kind_recent")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return self.url()

    def for_reader(self, html: str) -> str:
        """`html` rendered for no reader, with this reader's other person in a direct conversation's links."""
        if self.is_direct and self.peer is not None:
            return html.replace(self.PEER_PLACEHOLDER, self.peer.username)
        return html

    def shared(self) -> Room:
        """This conversation as a fragment rendered once for all its readers sees it: naming no other person."""
        if self.peer is None:
            return self
        room = copy.copy(self)
        room.peer = None
        return room

    def url(self, view: str = "room", *args: object) -> str:
        """The URL of one of the conversation's pages for this reader (chat.urls.conversation_urls)."""
        prefix, key = self.path_args
        return conversation_path(f"{prefix}:{view}", (key, *args), get_script_prefix())

    @property
    def group_name(self) -> str:
        """The channel-layer group of every page showing this conversation."""
        return f"chat_{self.pk}"

    @property
    def sidebar_group(self) -> str:
        """The channel-layer group of every open page of the conversation's members: their sidebars' badges."""
        return sidebar_group(self.pk)

    @property
    def is_direct(self) -> bool:
        return self.kind == self.Kind.DIRECT

    @property
    def is_private(self) -> bool:
        return self.kind == self.Kind.PRIVATE

    @property
    def title(self) -> str:
        """What a page calls the conversation: #room, or @person for the reader's direct conversation."""
        return f"@{self.peer.username}" if self.is_direct and self.peer is not None else f"#{self.name}"

    @property
    def path_args(self) -> tuple[str, str]:
        """The URL prefix and key of the conversation's pages for this reader: ("chat", name) or ("dm", username)."""
        if self.is_direct:
            return ("dm", self.peer.username)
        return ("chat", self.name)

    @property
    def socket_path(self) -> str:
        prefix, key = self.path_args
        return f"/ws/{prefix}/{key}/"


def sidebar_group(room_id: int) -> str:
    return f"sidebar_{room_id}"


@lru_cache(maxsize=10_000)
def conversation_path(view: str, args: tuple, script_prefix: str) -> str:
    """reverse() of a conversation's page, once per conversation and page: a sidebar names each conversation, a log
    each message's thread, on every render."""
    return reverse(view, args=args)


class Message(models.Model):
    """A message of a conversation: a room's, or one of two people's direct conversation (a private message)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages_sent")
    # In a direct conversation, the other person: whom the whisper shown in room pages names.
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="messages_received",
        null=True,
        blank=True,
    )
    body = models.TextField()
    # The body rendered once (chat.formatting) when stored or edited: allowlisted HTML, the same for every reader.
    body_html = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the author within CHAT_EDIT_WINDOW_SECONDS; a retracted message keeps its place, not its text.
    edited_at = models.DateTimeField(null=True, blank=True)
    retracted_at = models.DateTimeField(null=True, blank=True)
    # Existing users named as @username in the body, when the message was sent.
    mentions = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="mentioned_in", blank=True)
    # {emoji: [user id, ...]} of its Reaction rows, rewritten with them: a page shows reactions without a query.
    reactions_summary = models.JSONField(default=dict, blank=True)
    # A reply: the message of the same conversation whose thread it is in (never a reply itself). Replies stay out of
    # the conversation's log; their thread's page shows them.
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, related_name="replies", null=True, blank=True, db_index=False
    )
    # A thread's summary, kept on its first message with each reply: its log shows it without a query.
    reply_count = models.PositiveIntegerField(default=0)
    last_reply_at = models.DateTimeField(null=True, blank=True)
    # The latest repliers' usernames, the latest first (at most THREAD_REPLIERS_SHOWN).
    last_repliers = models.JSONField(default=list, blank=True)
    # The key of the form it was sent from (a fresh one with each form the server renders): the same frame sent
    # again, after a connection dropped before its answer came, finds its message stored and is not stored twice.
    # A row written outside the application (an import) has none: the database's default.
    client_key = models.CharField(max_length=32, blank=True, default="", db_default="", editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["author", "client_key"], condition=~models.Q(client_key=""), name="chat_msg_author_key"
            ),
        ]
        indexes = [
            models.Index(fields=["parent", "id"], name="chat_msg_thread"),
            models.Index(fields=["room", "-id"], name="chat_msg_room_recent"),
            models.Index(fields=["recipient", "-id"], name="chat_msg_recipient_recent"),
            models.Index(fields=["author", "-created_at"], name="chat_msg_author_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.author_id} in {self.room_id}: {self.body[:40]}"

    @property
    def is_private(self) -> bool:
        return self.recipient_id is not None

    @property
    def is_reply(self) -> bool:
        return self.parent_id is not None

    @property
    def mentioned_ids(self) -> list[int]:
        """The mentioned users' ids, without a query for a message that names nobody."""
        return [user.pk for user in self.mentions.all()] if "@" in self.body else []

    @property
    def body_markup(self) -> SafeString:
        """The stored rendering, sanitized when stored; a row written around the services shows its text escaped."""
        if self.body_html or not self.body:
            return mark_safe(self.body_html)  # chat.formatting's allowlist sanitizer made it
        return format_html("<p>{}</p>", self.body)

    @property
    def attachment_or_none(self) -> Attachment | None:
        """The message's file, if any (fetched with the message by the selectors: no query of its own)."""
        try:
            return self.attachment
        except ObjectDoesNotExist:
            return None

    def reaction_list(self) -> list[dict[str, object]]:
        """The emoji given to this message, in the fixed order, each with its count and who gave it."""
        summary = self.reactions_summary or {}
        return [
            {"emoji": emoji, "count": len(summary[emoji]), "user_ids": summary[emoji]}
            for emoji in REACTION_EMOJI
            if summary.get(emoji)
        ]


# How many of a thread's latest repliers its summary names.
THREAD_REPLIERS_SHOWN = 3


class ThreadFollow(models.Model):
    """A user following a thread (its first message's author, everyone who replied or was mentioned in it), and how
    far they have read its replies."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="thread_follows")
    thread = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="follows")
    # The newest reply id the user has seen: later ones (not theirs) are unread.
    last_read_id = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "thread"], name="chat_thread_follow_once")]

    def __str__(self) -> str:
        return f"{self.user_id} follows {self.thread_id}, read to {self.last_read_id}"


class Reaction(models.Model):
    """One user's reaction with one emoji to one message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions")
    emoji = models.CharField(max_length=8, choices=[(emoji, emoji) for emoji in REACTION_EMOJI])
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "emoji"], name="chat_reaction_once_per_user_emoji")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.emoji} {self.message_id}"


def attachment_upload_to(instance: Attachment, filename: str) -> str:
    """A name of our own (never the uploader's), its extension from the judged type: nothing guesses HTML from it."""
    return f"attachments/{timezone.now():%Y/%m}/{uuid.uuid4().hex}{IMAGE_TYPES.get(instance.content_type, '.bin')}"


# The image types shown in the page, judged from the content (chat.attachments), with their files' extension.
IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


class Attachment(models.Model):
    """A file or image shared as a message: bytes in the default storage, served by a view that checks access."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="attachment")
    file = models.FileField(upload_to=attachment_upload_to, max_length=200)
    # Made once at upload, for images only.
    thumbnail = models.FileField(upload_to="thumbnails/%Y/%m/", max_length=200, blank=True)
    # The uploader's file name, shown and offered as the download's name only.
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    # One of IMAGE_TYPES when the content decoded as that image; application/octet-stream for anything else.
    content_type = models.CharField(max_length=100)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    thumbnail_width = models.PositiveIntegerField(null=True, blank=True)
    thumbnail_height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="chat_attachment_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.size} bytes) in {self.message_id}"

    @property
    def is_image(self) -> bool:
        return self.content_type in IMAGE_TYPES


class PrivateMessageManager(models.Manager["PrivateMessage"]):
    def get_queryset(self) -> models.QuerySet[PrivateMessage]:
        return super().get_queryset().filter(room__kind=Room.Kind.DIRECT)


class PrivateMessage(Message):
    """The messages of direct conversations, listed apart from room messages in the admin."""

    objects = PrivateMessageManager()

    class Meta:
        proxy = True


class Membership(models.Model):
    """A person in a conversation: in their sidebar, readable by them when private or direct, read up to a mark.

    Opening a room joins it (leaving deletes the row); a private room's members are added by its creator or staff;
    a direct conversation has its two people from the start.
    """

    class Level(models.TextChoices):
        """What of the conversation notifies the member: counts in the page title, and is emailed when missed."""

        ALL = "all", "Every message"
        MENTIONS = "mentions", "Only messages that mention me"
        NOTHING = "nothing", "Nothing (muted)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    # The newest message id the user has seen: what came after counts as unread.
    last_read_id = models.BigIntegerField(default=0)
    joined_at = models.DateTimeField(default=timezone.now)
    # A room's default; a direct conversation's members start at ALL (Membership.level_default).
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.MENTIONS)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="chat_membership_user_room_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id}, read to {self.last_read_id}"

    @classmethod
    def level_default(cls, room: Room) -> str:
        """Everything of a direct conversation notifies; of a room, only what mentions the member."""
        return cls.Level.ALL if room.is_direct else cls.Level.MENTIONS

    @property
    def muted(self) -> bool:
        return self.level == self.Level.NOTHING


class NotificationPreference(models.Model):
    """A user's email notifications: whether they want them, and when the last was sent (one per window).

    No row: the defaults (emails on, none sent yet).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="notification_preference"
    )
    email_enabled = models.BooleanField(default=True)
    last_emailed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id}: emails {'on' if self.email_enabled else 'off'}"


class EmailNotice(models.Model):
    """A message that notifies a user with an email address, waiting to be emailed if it is still unread later.

    Written with the message; the worker gathers a user's notices into one email, then deletes them (sent or read).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_notices")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="email_notices")
    created_at = models.DateTimeField(default=timezone.now)
    # The worker run that took it into an email: a notice is claimed once, so no message is emailed twice.
    claimed_by = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "message"], name="chat_email_notice_once")]
        indexes = [models.Index(fields=["user", "claimed_by", "message"], name="chat_email_notice_user")]

    def __str__(self) -> str:
        return f"{self.message_id} for {self.user_id}"
