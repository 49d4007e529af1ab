"""Reads: what a page or a socket shows. No writes here."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from accounts.models import User
from chat.models import Message, Room


def presence_cutoff():
    """Connections not refreshed since this moment belong to a dead process."""
    return timezone.now() - timedelta(seconds=settings.CHAT_PRESENCE_TIMEOUT)


def room_get(*, name: str) -> Room | None:
    return Room.objects.filter(name__iexact=name).first()


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


def message_list_recent(*, room: Room, user: User, limit: int | None = None) -> list[Message]:
    """The room's newest messages and the user's newest private messages, oldest first."""
    limit = limit or settings.CHAT_HISTORY_LENGTH
    related = ("author", "recipient")
    public = Message.objects.filter(room=room, recipient=None).select_related(*related).order_by("-id")[:limit]
    private = (
        Message.objects.filter(Q(recipient=user) | Q(author=user, recipient__isnull=False))
        .select_related(*related)
        .order_by("-id")[:limit]
    )
    return sorted({m.pk: m for m in [*public, *private]}.values(), key=lambda m: m.pk)


def user_get_by_username(*, username: str) -> User | None:
    return get_user_model().objects.filter(username__iexact=username).first()
