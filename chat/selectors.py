"""Reads: what a page or a socket shows. No writes here."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, prefetch_related_objects
from django.db.models.functions import Lower

from accounts.models import User
from chat import presence
from chat.models import Attachment, Message, Room, RoomVisit

SEARCH_CONFIG = "english"


def room_get(*, name: str) -> Room | None:
    # LOWER(name) = ..., which the case-insensitive unique index answers (iexact would not on PostgreSQL).
    return Room.objects.alias(name_lower=Lower("name")).filter(name_lower=name.lower()).first()


def room_directory(*, user: User) -> list[Room]:
    """Every room with its online count (people, not tabs), the room with the latest message first.

    For rooms the user has had open: how many messages came since (`unread_count`), and whether
    one of them mentions the user (`mentioned`). Online counts come from the presence store.
    """
    latest = Message.objects.filter(room=OuterRef("pk"), recipient=None).order_by("-id").values("created_at")[:1]
    last_read = RoomVisit.objects.filter(room=OuterRef("pk"), user=user).values("last_read_id")[:1]
    since = Message.objects.filter(room=OuterRef("pk"), recipient=None, id__gt=OuterRef("last_read_id"))
    unread = since.exclude(author=user).order_by().values("room").annotate(n=Count("pk")).values("n")[:1]
    rooms = list(
        Room.objects.annotate(last_message_at=Subquery(latest), last_read_id=Subquery(last_read))
        .annotate(unread_count=Subquery(unread), mentioned=Exists(since.filter(mentions=user)))
        .order_by(F("last_message_at").desc(nulls_last=True), "name")
    )
    room_ids = [room.pk for room in rooms]
    counts = presence.store().counts(room_ids=room_ids)
    # A room the user has open right now is being read: nothing in it is new.
    open_now = presence.store().rooms_of(user_id=user.pk, room_ids=room_ids)
    for room in rooms:
        room.online_count = counts.get(room.pk, 0)
        room.open_now = room.pk in open_now
    return rooms


def room_last_read_id(*, room: Room, user: User) -> int | None:
    return RoomVisit.objects.filter(room=room, user=user).values_list("last_read_id", flat=True).first()


def messages_visible_to(*, user: User) -> QuerySet[Message]:
    """Room messages, and the private messages the user sent or received."""
    visible = Q(recipient=None) | Q(recipient=user) | Q(author=user)
    return Message.objects.filter(visible).select_related("room", "author", "recipient", "attachment")


def message_latest_id() -> int:
    return Message.objects.order_by("-id").values_list("id", flat=True).first() or 0


def room_latest_message_id(*, room: Room) -> int:
    return Message.objects.filter(room=room, recipient=None).order_by("-id").values_list("id", flat=True).first() or 0


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
    """The room's newest messages (older than `before`), oldest first; the same for every reader."""
    return _recent(Q(room=room, recipient=None), before=before, limit=limit)


def private_messages_recent(*, user: User, before: int | None = None, limit: int | None = None) -> list[Message]:
    """The newest private messages the user sent or received (older than `before`), oldest first."""
    return _recent(Q(recipient=user) | Q(author=user, recipient__isnull=False), before=before, limit=limit)


def _recent(visible: Q, *, before: int | None, limit: int | None) -> list[Message]:
    # A keyset query on its own index.
    messages = Message.objects.filter(visible)
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
    """The newest messages of the room and of the user's private ones (older than `before`), oldest first."""
    room_messages = room_messages_recent(room=room, before=before, limit=limit)
    private = private_messages_recent(user=user, before=before, limit=limit)
    return messages_merged(room_messages, private, limit=limit)


def message_search(*, room: Room, query: str, limit: int = 50) -> list[Message]:
    """The room's messages matching every word, newest first: full-text on PostgreSQL, substrings elsewhere."""
    messages = (
        Message.objects.filter(room=room, recipient=None)
        .select_related("author", "attachment")
        .prefetch_related("mentions")
    )
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
    """A room message with the messages just before and after it, oldest first."""
    messages = (
        Message.objects.filter(room=room, recipient=None)
        .select_related("author", "attachment")
        .prefetch_related("mentions")
    )
    before = messages.filter(id__lt=message_id).order_by("-id")[:around]
    rest = messages.filter(id__gte=message_id).order_by("id")[: around + 1]
    return [*reversed(before), *rest]


def user_get_by_username(*, username: str) -> User | None:
    users = get_user_model().objects.alias(username_lower=Lower("username"))
    return users.filter(username_lower=username.lower()).first()


def attachment_get_visible(*, user: User, attachment_id: int) -> Attachment | None:
    """The attachment, if the user may read the message that carries it (a conversation page reuses this)."""
    if not user.is_authenticated:
        return None
    visible = messages_visible_to(user=user).filter(retracted_at=None)
    return Attachment.objects.filter(pk=attachment_id, message__in=visible.values("pk")).first()
