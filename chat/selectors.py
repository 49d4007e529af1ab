"""Reads: what a page or a socket shows. No writes here."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, prefetch_related_objects
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import User
from chat.models import Attachment, Connection, Message, Room, RoomVisit

SEARCH_CONFIG = "english"


def presence_cutoff():
    """Connections not refreshed since this moment belong to a dead process."""
    return timezone.now() - timedelta(seconds=settings.CHAT_PRESENCE_TIMEOUT)


def room_get(*, name: str) -> Room | None:
    # LOWER(name) = ..., which the case-insensitive unique index answers (iexact would not on PostgreSQL).
    return Room.objects.alias(name_lower=Lower("name")).filter(name_lower=name.lower()).first()


def room_directory(*, user: User) -> QuerySet[Room]:
    """Every room with its online count (people, not tabs), the room with the latest message first.

    For rooms the user has had open: how many messages came since (`unread_count`), and whether
    one of them mentions the user (`mentioned`).
    """
    latest = Message.objects.filter(room=OuterRef("pk"), recipient=None).order_by("-id").values("created_at")[:1]
    last_read = RoomVisit.objects.filter(room=OuterRef("pk"), user=user).values("last_read_id")[:1]
    since = Message.objects.filter(room=OuterRef("pk"), recipient=None, id__gt=OuterRef("last_read_id"))
    unread = since.exclude(author=user).order_by().values("room").annotate(n=Count("pk")).values("n")[:1]
    return (
        Room.objects.annotate(
            online_count=Count(
                "connections__user", distinct=True, filter=Q(connections__seen_at__gte=presence_cutoff())
            ),
            last_message_at=Subquery(latest),
            last_read_id=Subquery(last_read),
        )
        .annotate(
            # A room the user has open right now is being read: nothing in it is new.
            open_now=Exists(Connection.objects.filter(room=OuterRef("pk"), user=user, seen_at__gte=presence_cutoff())),
            unread_count=Subquery(unread),
            mentioned=Exists(since.filter(mentions=user)),
        )
        .order_by(F("last_message_at").desc(nulls_last=True), "name")
    )


def room_last_read_id(*, room: Room, user: User) -> int | None:
    return RoomVisit.objects.filter(room=room, user=user).values_list("last_read_id", flat=True).first()


def messages_visible_to(*, user: User) -> QuerySet[Message]:
    """Room messages, and the private messages the user sent or received."""
    visible = Q(recipient=None) | Q(recipient=user) | Q(author=user)
    return Message.objects.filter(visible).select_related("room", "author", "recipient", "attachment")


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
    return list(
        get_user_model()
        .objects.filter(connections__room=room, connections__seen_at__gte=presence_cutoff())
        .distinct()
        .order_by("username")
        .only("id", "username")
    )


def room_online_count(*, room: Room) -> int:
    return (
        get_user_model()
        .objects.filter(connections__room=room, connections__seen_at__gte=presence_cutoff())
        .distinct()
        .count()
    )


def message_list_recent(
    *, room: Room, user: User, before: int | None = None, limit: int | None = None
) -> list[Message]:
    """The newest messages of the room and of the user's private ones (older than `before`), oldest first."""
    limit = limit or settings.CHAT_HISTORY_LENGTH
    page: list[Message] = []
    # Two keyset queries on their own indexes, merged: the room's log and the user's private messages.
    for visible in (Q(room=room, recipient=None), Q(recipient=user) | Q(author=user, recipient__isnull=False)):
        messages = Message.objects.filter(visible)
        if before is not None:
            messages = messages.filter(id__lt=before)
        page.extend(messages.select_related("author", "recipient", "attachment").order_by("-id")[:limit])
    page = sorted(page, key=lambda m: m.pk)[-limit:]
    # One query for the mentions of the whole page, none when no message names anyone.
    prefetch_related_objects([m for m in page if "@" in m.body], "mentions")
    return page


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
