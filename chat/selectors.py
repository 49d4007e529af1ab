"""Reads: what a page or a socket shows. No writes here."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import User
from chat.models import Message, Room

SEARCH_CONFIG = "english"


def presence_cutoff():
    """Connections not refreshed since this moment belong to a dead process."""
    return timezone.now() - timedelta(seconds=settings.CHAT_PRESENCE_TIMEOUT)


def room_get(*, name: str) -> Room | None:
    # LOWER(name) = ..., which the case-insensitive unique index answers (iexact would not on PostgreSQL).
    return Room.objects.alias(name_lower=Lower("name")).filter(name_lower=name.lower()).first()


def room_directory() -> QuerySet[Room]:
    """Every room with its online count (people, not tabs), the room with the latest message first."""
    latest = Message.objects.filter(room=OuterRef("pk"), recipient=None).order_by("-id").values("created_at")[:1]
    return Room.objects.annotate(
        online_count=Count("connections__user", distinct=True, filter=Q(connections__seen_at__gte=presence_cutoff())),
        last_message_at=Subquery(latest),
    ).order_by(F("last_message_at").desc(nulls_last=True), "name")


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
        page.extend(messages.select_related("author", "recipient").order_by("-id")[:limit])
    return sorted(page, key=lambda m: m.pk)[-limit:]


def message_search(*, room: Room, query: str, limit: int = 50) -> list[Message]:
    """The room's messages matching every word, newest first: full-text on PostgreSQL, substrings elsewhere."""
    messages = Message.objects.filter(room=room, recipient=None).select_related("author")
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
    messages = Message.objects.filter(room=room, recipient=None).select_related("author")
    before = messages.filter(id__lt=message_id).order_by("-id")[:around]
    rest = messages.filter(id__gte=message_id).order_by("id")[: around + 1]
    return [*reversed(before), *rest]


def user_get_by_username(*, username: str) -> User | None:
    users = get_user_model().objects.alias(username_lower=Lower("username"))
    return users.filter(username_lower=username.lower()).first()
