"""Who is in a conversation: joining, leaving, members a creator adds or takes out, privacy, how far each has read
and what of it notifies each."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from functools import partial

from django.db import transaction

from accounts.models import User
from chat import broadcasts, selectors
from chat.errors import ChatError, NotFound
from chat.models import Membership, Room
from chat.services.rooms import room_manage_check

logger = logging.getLogger(__name__)


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
            transaction.on_commit(partial(broadcasts.conversation_joined, room=room, user=user))
            return None
    else:
        membership = Membership.objects.filter(room=room, user=user).first()
        if membership is None:
            return None
    if membership.last_read_id != latest:
        Membership.objects.filter(pk=membership.pk).update(last_read_id=latest)
        if join:  # opened: the user's other pages stop counting it
            transaction.on_commit(partial(broadcasts.conversation_read, room_id=room.pk, user_id=user.pk))
    return membership.last_read_id


def read_marks_advance(*, marks: dict[tuple[int, int], int]) -> None:
    """Move read marks forward: {(room id, user id): the newest message id shown}, one UPDATE per room and id."""
    users: dict[tuple[int, int], list[int]] = defaultdict(list)
    for (room_id, user_id), message_id in marks.items():
        users[(room_id, message_id)].append(user_id)
    with transaction.atomic():
        for (room_id, message_id), user_ids in users.items():
            Membership.objects.filter(room_id=room_id, user_id__in=user_ids, last_read_id__lt=message_id).update(
                last_read_id=message_id
            )


def room_leave(*, room: Room, user: User) -> None:
    """Take the room off the user's sidebar; a private room's pages and sockets are then closed to them."""
    if room.is_direct:
        raise NotFound("There is no such room.")
    Membership.objects.filter(room=room, user=user).delete()
    room_members_changed(room=room, added=[], removed_ids=[user.pk])


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
        transaction.on_commit(partial(broadcasts.access_changed, room=room))
        transaction.on_commit(partial(broadcasts.room_unlisted, room=room))
    else:
        # Open pages learn the room is public again (their directories hear its online count).
        transaction.on_commit(partial(broadcasts.access_changed, room=room))
        transaction.on_commit(partial(broadcasts.room_listed, room=room))
    logger.info("room privacy set", extra={"room": room.name, "private": private, "by": by.username})
    return room


def room_member_join(*, room: Room, user: User) -> bool:
    """Make the user a member (their sidebars show the room at once); False when they were one already."""
    latest = selectors.room_latest_message_id(room=room)
    _, created = Membership.objects.get_or_create(room=room, user=user, defaults={"last_read_id": latest})
    if created:
        transaction.on_commit(partial(broadcasts.conversation_joined, room=room, user=user))
    return created


def notification_level_set(*, room: Room, user: User, level: str) -> Membership:
    """Set what of the conversation notifies the user (all, mentions, nothing); opening a room's page to do it joins
    it. Their open pages count their sidebar and title again."""
    if level not in Membership.Level.values:
        choices = ", ".join(Membership.Level.values)
        raise ChatError(f"Choose one of {choices}.", reason="invalid_level")
    room_member_join(room=room, user=user)
    Membership.objects.filter(room=room, user=user).update(level=level)
    transaction.on_commit(
        partial(broadcasts.notification_level_changed, room_id=room.pk, user_id=user.pk, level=level)
    )
    return Membership.objects.get(room=room, user=user)


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
    """Memberships changed (here or in the admin): sidebars and a private room's sockets follow, on commit."""
    for user in added:
        transaction.on_commit(partial(broadcasts.conversation_joined, room=room, user=user))
    removed_ids = list(removed_ids)
    if removed_ids:
        transaction.on_commit(partial(broadcasts.conversation_left, room=room, user_ids=removed_ids))
    if room.is_private:
        transaction.on_commit(partial(broadcasts.access_changed, room=room))
