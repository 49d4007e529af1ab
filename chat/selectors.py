"""Reads: what a page or a socket shows. No writes here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, prefetch_related_objects
from django.db.models.functions import Lower

from accounts.models import User
from chat import presence
from chat.models import Attachment, Membership, Message, Room, ThreadFollow, direct_room_name

SEARCH_CONFIG = "english"


def room_get(*, name: str) -> Room | None:
    # LOWER(name) = ..., which the case-insensitive unique index answers (iexact would not on PostgreSQL).
    return Room.objects.alias(name_lower=Lower("name")).filter(name_lower=name.lower()).first()


def direct_room_get(*, user: User, peer: User) -> Room | None:
    """The two people's conversation, if it exists, as `user` sees it."""
    room = Room.objects.filter(name=direct_room_name(user.pk, peer.pk), kind=Room.Kind.DIRECT).first()
    if room is not None:
        room.peer = peer
    return room


def direct_peer(*, room: Room, user: User) -> User | None:
    """The other person of a direct conversation."""
    return get_user_model().objects.filter(memberships__room=room).exclude(pk=user.pk).first()


def room_as_seen_by(*, room: Room, user: User) -> Room:
    """The conversation with what its pages need for this reader: a direct one's other person."""
    if room.is_direct and room.peer is None:
        room.peer = direct_peer(room=room, user=user)
    return room


# Who may read a conversation, decided here and only here: every page, fragment, search, file and socket asks.
def rooms_readable_by(*, user: User) -> QuerySet[Room]:
    """The conversations the user may read: every public room, and the private and direct ones they are in."""
    member = Membership.objects.filter(room=OuterRef("pk"), user_id=user.pk)
    return Room.objects.filter(Q(kind=Room.Kind.PUBLIC) | Exists(member))


def room_readable(*, room: Room, user: User) -> bool:
    """rooms_readable_by() for one room; a public room needs no query."""
    if not user.is_authenticated:
        return False
    return room.kind == Room.Kind.PUBLIC or rooms_readable_by(user=user).filter(pk=room.pk).exists()


def messages_visible_to(*, user: User) -> QuerySet[Message]:
    """The messages of the conversations the user may read."""
    readable = rooms_readable_by(user=user).values("pk")
    return Message.objects.filter(room__in=readable).select_related("room", "author", "recipient", "attachment")


DIRECTORY_PAGE_SIZE = 50


def room_directory(*, user: User, query: str = "", page: int | str = 1) -> Page:
    """One page of the public rooms (their name containing `query`), the most recently active first.

    Each room of the page has its online count (people, not tabs), and for the rooms the user has joined, how
    many messages came since they last read it (`unread_count`) and whether one mentions them (`mentioned`).
    A fixed number of queries, whatever the number of rooms: ordered by a column, counted for the page only.
    """
    rooms = Room.objects.filter(kind=Room.Kind.PUBLIC)
    if query:
        rooms = rooms.filter(name__icontains=query)
    rooms = rooms.order_by(F("last_message_at").desc(nulls_last=True), "-id")
    listing = Paginator(rooms, DIRECTORY_PAGE_SIZE).get_page(page)
    # The page says what it was asked for: its empty list reads "no room matches", not "no rooms yet", wherever it
    # is rendered (the page, or the directory socket's refresh, which knows the query only from here).
    listing.query = query
    unread_mark(user=user, rooms=list(listing))
    return listing


def unread_mark(*, user: User, rooms: list[Room], memberships: list[Membership] | None = None) -> None:
    """Set each room's `level` (None: not joined), `last_read_id`, `unread_count`, `mentioned`, `notify_count`,
    `online_count` and `open_now`, in three queries for any number of rooms (two when `memberships` holds the
    user's memberships of them already).

    `notify_count` is what notifies the user (the title's count): every unread message at level `all`, the unread
    ones mentioning them at `mentions`. A muted conversation (`nothing`) shows and counts nothing.
    """
    room_ids = [room.pk for room in rooms]
    if memberships is None:
        memberships = list(Membership.objects.filter(user_id=user.pk, room_id__in=room_ids))
    joined = {membership.room_id: membership for membership in memberships}
    # Replies are counted by their threads (`threads_followed`), not in their conversation.
    since = Message.objects.filter(
        room_id__in=list(joined),
        room__memberships__user_id=user.pk,
        id__gt=F("room__memberships__last_read_id"),
        parent=None,
    ).exclude(author_id=user.pk)
    # Distinct: the mentions' join gives a message one row per person it names.
    counts = (
        since.order_by()
        .values("room_id")
        .annotate(n=Count("pk", distinct=True), mentions=Count("pk", filter=Q(mentions=user.pk), distinct=True))
    )
    unread = {row["room_id"]: (row["n"], row["mentions"]) for row in counts} if joined else {}
    online = presence.store().counts(room_ids=room_ids)
    # A room the user has open right now is being read: nothing in it is new.
    open_now = presence.store().rooms_of(user_id=user.pk, room_ids=room_ids)
    for room in rooms:
        membership = joined.get(room.pk)
        room.level = membership.level if membership is not None else None
        room.last_read_id = membership.last_read_id if membership is not None else None
        room.open_now = room.pk in open_now
        room.muted = membership is not None and membership.muted
        count, mentions = (0, 0) if room.open_now or room.muted else unread.get(room.pk, (0, 0))
        room.unread_count, room.mentioned = count, mentions > 0
        room.notify_count = notify_count(level=room.level, unread=count, mentions=mentions)
        room.online_count = online.get(room.pk, 0)


def notify_count(*, level: str | None, unread: int, mentions: int) -> int:
    """How many of a conversation's unread messages notify a member at this level (not joined: none)."""
    if level == Membership.Level.ALL:
        return unread
    if level == Membership.Level.MENTIONS:
        return mentions
    return 0


@dataclass
class Sidebar:
    """A user's conversations: the rooms they joined, by name, and the people they talk to, the latest first."""

    rooms: list[Room]
    people: list[Room]
    # The newest message id its counts include: a later one's news adds to them (chat.consumers).
    counted_up_to: int
    # The unread replies of each followed thread that has some (not the one the page shows).
    threads_unread: dict[int, int]

    @property
    def threads_unread_total(self) -> int:
        return sum(self.threads_unread.values())

    @property
    def notify_total(self) -> int:
        """The unread messages that notify the user, in every conversation but the one read, and the unread replies
        of the threads they follow: the title's count."""
        return sum(room.notify_count for room in [*self.rooms, *self.people]) + self.threads_unread_total


def sidebar_room_ids(*, user: User) -> list[int]:
    """The conversations whose news the user's pages hear (their sockets join those groups)."""
    return list(Membership.objects.filter(user_id=user.pk).values_list("room_id", flat=True))


def sidebar(*, user: User, current: Room | None = None, thread: Message | None = None) -> Sidebar:
    """The user's sidebar with its unread counts, `current` marked (and counting nothing: it is being read, unless the
    page shows one of its threads, `thread`, which then counts nothing).

    A direct conversation shows once it has a message, or while it is the page's own.
    """
    counted_up_to = message_latest_id()
    memberships = list(Membership.objects.filter(user_id=user.pk).select_related("room"))
    rooms = [m.room for m in memberships]
    direct = [room for room in rooms if room.is_direct and (room.last_message_at or room == current)]
    peers = dict(
        Membership.objects.filter(room__in=direct).exclude(user_id=user.pk).values_list("room_id", "user__username")
    )
    people = []
    for room in direct:
        if room.pk in peers:
            room.peer = User(username=peers[room.pk])
            people.append(room)
    joined = sorted((room for room in rooms if not room.is_direct), key=lambda room: room.name.lower())
    people.sort(key=lambda room: room.last_message_at or room.created_at, reverse=True)
    unread_mark(user=user, rooms=[*joined, *people], memberships=memberships)
    for room in [*joined, *people]:
        room.is_current = current is not None and room.pk == current.pk
        if room.is_current and thread is None:
            room.unread_count, room.mentioned, room.notify_count = 0, False, 0
    threads_unread = {
        followed.parent.pk: followed.unread
        for followed in threads_followed(user=user)
        if followed.unread and (thread is None or followed.parent.pk != thread.pk)
    }
    return Sidebar(rooms=joined, people=people, counted_up_to=counted_up_to, threads_unread=threads_unread)


def room_last_read_id(*, room: Room, user: User) -> int | None:
    return Membership.objects.filter(room=room, user=user).values_list("last_read_id", flat=True).first()


def notification_level(*, room: Room, user: User) -> str:
    """The user's level in the conversation: theirs, or the default a member starts with."""
    level = Membership.objects.filter(room=room, user=user).values_list("level", flat=True).first()
    return level or Membership.level_default(room)


def room_member_ids(*, room: Room) -> list[int]:
    return list(Membership.objects.filter(room=room).values_list("user_id", flat=True))


def room_member_names(*, room: Room) -> list[str]:
    return list(
        get_user_model()
        .objects.filter(memberships__room=room)
        .order_by(Lower("username"))
        .values_list("username", flat=True)
    )


def message_latest_id() -> int:
    return Message.objects.order_by("-id").values_list("id", flat=True).first() or 0


def message_previous(*, message: Message) -> tuple[int, datetime] | None:
    """Who sent the message before this one in its conversation, and when (None: it is the first)."""
    previous = Message.objects.filter(room_id=message.room_id, pk__lt=message.pk, parent=None).order_by("-pk")
    return previous.values_list("author_id", "created_at").first()


def room_latest_message_id(*, room: Room) -> int:
    return Message.objects.filter(room=room).order_by("-id").values_list("id", flat=True).first() or 0


def unread_divider_id(*, messages: list[Message], last_read_id: int | None, user: User) -> int | None:
    """The first message the user has not seen in a room they had open before, if any."""
    if last_read_id is None:
        return None
    unseen = (m.pk for m in messages if m.pk > last_read_id and m.author_id != user.pk and not m.is_private)
    return next(unseen, None)


def users_by_usernames(*, usernames: set[str]) -> list[User]:
    """The users with these usernames, in any casing."""
    if not usernames:
        return []
    return list(get_user_model().objects.alias(username_lower=Lower("username")).filter(username_lower__in=usernames))


def room_online_users(*, room: Room) -> list[User]:
    """The users with at least one live connection to the room, by username."""
    user_ids = presence.store().online_now(room_id=room.pk)
    return list(get_user_model().objects.filter(pk__in=user_ids).order_by("username").only("id", "username"))


def usernames_by_ids(*, user_ids: set[int]) -> dict[int, str]:
    return dict(get_user_model().objects.filter(pk__in=user_ids).values_list("id", "username"))


def room_messages_recent(*, room: Room, before: int | None = None, limit: int | None = None) -> list[Message]:
    """The room's newest messages (older than `before`), oldest first, without replies; the same for every reader."""
    return _recent(Q(room=room), before=before, limit=limit)


def conversation_messages(*, room: Room, after: int | None, limit: int) -> list[Message]:
    """A conversation's messages with their replies (each names its thread), oldest first: the first `limit` newer
    than `after`, or without it the newest `limit` (the API: a reader catching up sees everything)."""
    messages = Message.objects.filter(room=room).select_related("author", "recipient", "attachment")
    if after is not None:
        return list(messages.filter(id__gt=after).order_by("id")[:limit])
    return list(reversed(messages.order_by("-id")[:limit]))


def private_messages_recent(
    *, user: User, before: int | None = None, limit: int | None = None, rooms: list[int] | None = None
) -> list[Message]:
    """The newest messages of the user's direct conversations (older than `before`), oldest first: their
    whispers in a room page. `rooms`: those conversations' ids when the caller has them (a page's sidebar lists
    every direct conversation with a message): no query at all when there are none."""
    if rooms is not None:
        return _recent(Q(room_id__in=rooms), before=before, limit=limit) if rooms else []
    direct = Membership.objects.filter(user_id=user.pk, room__kind=Room.Kind.DIRECT).values("room_id")
    return _recent(Q(room__in=direct), before=before, limit=limit)


def _recent(visible: Q, *, before: int | None, limit: int | None) -> list[Message]:
    # A keyset query on its own index; replies show in their threads only.
    messages = Message.objects.filter(visible, parent=None)
    if before is not None:
        messages = messages.filter(id__lt=before)
    newest = messages.select_related("author", "recipient", "attachment").order_by("-id")
    page = list(reversed(newest[: limit or settings.CHAT_HISTORY_LENGTH]))
    # One query for the mentions of the whole page, none when no message names anyone.
    prefetch_related_objects([m for m in page if "@" in m.body], "mentions")
    return page


def messages_merged(room_messages: list[Message], private: list[Message], limit: int | None = None) -> list[Message]:
    """A room's log and a reader's private messages as one log, the newest `limit`, oldest first."""
    if not private:
        return room_messages
    return sorted([*room_messages, *private], key=lambda m: m.pk)[-(limit or settings.CHAT_HISTORY_LENGTH) :]


def message_list_recent(
    *, room: Room, user: User, before: int | None = None, limit: int | None = None
) -> list[Message]:
    """The newest messages of a conversation (older than `before`), oldest first; a room's with the whispers of
    the user's direct conversations among them."""
    room_messages = room_messages_recent(room=room, before=before, limit=limit)
    if room.is_direct:
        return room_messages
    private = private_messages_recent(user=user, before=before, limit=limit)
    return messages_merged(room_messages, private, limit=limit)


def message_search(*, room: Room, query: str, limit: int = 50) -> list[Message]:
    """The conversation's messages matching every word, newest first: full-text on PostgreSQL, substrings elsewhere."""
    messages = Message.objects.filter(room=room).select_related("author", "attachment").prefetch_related("mentions")
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        # The same expression as the GIN index on chat_message.body, so the index answers it.
        messages = messages.annotate(document=SearchVector("body", config=SEARCH_CONFIG)).filter(
            document=SearchQuery(query, config=SEARCH_CONFIG, search_type="websearch")
        )
    else:
        for word in query.split():
            messages = messages.filter(body__icontains=word)
    return list(messages.order_by("-id")[:limit])


def message_context(*, room: Room, message_id: int, around: int = 25) -> list[Message]:
    """A conversation's message with the messages just before and after it, oldest first (not replies: a reply shows
    in its thread)."""
    messages = Message.objects.filter(room=room, parent=None)
    messages = messages.select_related("author", "attachment").prefetch_related("mentions")
    before = messages.filter(id__lt=message_id).order_by("-id")[:around]
    rest = messages.filter(id__gte=message_id).order_by("id")[: around + 1]
    return [*reversed(before), *rest]


# Threads


def thread_parent(*, room: Room, message_id: int) -> Message | None:
    """The conversation's message with this id, with its author (any message: the caller checks it is no reply)."""
    return Message.objects.filter(room=room, pk=message_id).select_related("author", "attachment").first()


def thread_replies(*, parent: Message) -> list[Message]:
    """A thread's replies, oldest first."""
    replies = list(parent.replies.select_related("author", "attachment").order_by("id"))
    prefetch_related_objects([m for m in replies if "@" in m.body], "mentions")
    return replies


def thread_latest_reply_id(*, parent: Message) -> int:
    return parent.replies.order_by("-id").values_list("id", flat=True).first() or 0


@dataclass
class FollowedThread:
    """A thread the user follows, as /threads/ lists it."""

    parent: Message
    unread: int
    muted: bool


def threads_followed(*, user: User) -> list[FollowedThread]:
    """The threads the user follows that have a reply, the latest reply first, each with the replies they have not
    seen (never their own; none while its conversation is muted): two queries, however many threads; one, and
    little to build, for the many who follow none with a reply (every page's sidebar asks)."""
    if not ThreadFollow.objects.filter(user_id=user.pk, thread__reply_count__gt=0).exists():
        return []
    follows = ThreadFollow.objects.filter(
        user_id=user.pk, thread__reply_count__gt=0, thread__room__in=rooms_readable_by(user=user)
    )
    unseen = Q(thread__replies__id__gt=F("last_read_id")) & ~Q(thread__replies__author_id=user.pk)
    rows = list(
        follows.annotate(unread=Count("thread__replies", filter=unseen, distinct=True))
        .select_related("thread__author", "thread__room")
        .order_by("-thread__last_reply_at", "-thread_id")
    )
    muted = set(
        Membership.objects.filter(
            user_id=user.pk, room_id__in={row.thread.room_id for row in rows}, level=Membership.Level.NOTHING
        ).values_list("room_id", flat=True)
    )
    # A direct conversation's threads are named by the other person: one query for all of them.
    direct = {row.thread.room_id: row.thread.room for row in rows if row.thread.room.is_direct}
    peers = Membership.objects.filter(room_id__in=list(direct)).exclude(user_id=user.pk) if direct else []
    for room_id, username in peers.values_list("room_id", "user__username") if direct else []:
        direct[room_id].peer = User(username=username)
    return [
        FollowedThread(
            parent=row.thread,
            unread=0 if row.thread.room_id in muted else row.unread,
            muted=row.thread.room_id in muted,
        )
        for row in rows
    ]


def message_by_key(*, author: User, key: str) -> Message | None:
    """The message the author stored under a client's key (chat.services.messages.message_insert), its conversation
    as the author sees it."""
    message = (
        Message.objects.filter(author=author, client_key=key).select_related("room", "author", "recipient").first()
    )
    if message is not None and message.room.is_direct:
        message.room.peer = message.recipient  # the author's other person
    return message


def reply_parent_id(*, room: Room, message_id: int) -> int | None:
    """The thread of the conversation's message when it is a reply, else None."""
    return Message.objects.filter(room=room, pk=message_id).values_list("parent_id", flat=True).first()


def thread_follower_ids(*, parent: Message) -> list[int]:
    return list(ThreadFollow.objects.filter(thread=parent).values_list("user_id", flat=True))


def user_get_by_username(*, username: str) -> User | None:
    users = get_user_model().objects.alias(username_lower=Lower("username"))
    return users.filter(username_lower=username.lower()).first()


def attachment_get_visible(*, user: User, attachment_id: int) -> Attachment | None:
    """The attachment, if the user may read the message that carries it (a conversation page reuses this)."""
    if not user.is_authenticated:
        return None
    visible = messages_visible_to(user=user).filter(retracted_at=None)
    return Attachment.objects.filter(pk=attachment_id, message__in=visible.values("pk")).first()
