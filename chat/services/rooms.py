"""Conversations: room names, finding or creating a room or two people's conversation, who may open which."""

from __future__ import annotations

from functools import partial

from django.db import IntegrityError, transaction

from accounts.models import User
from chat import broadcasts, flood, selectors
from chat.errors import ChatError, InvalidRoomName, NotFound, TooManyWrites
from chat.models import ROOM_NAME_RE, Membership, Room, direct_room_name


def room_name_validate(name: str) -> str:
    if not ROOM_NAME_RE.fullmatch(name):
        raise InvalidRoomName("Room names are 1 to 50 letters, digits, hyphens or underscores.")
    return name


def room_get_or_create(*, name: str, by: User | None = None) -> Room:
    """The room of that name in any casing, created with this casing (and `by` as its creator) when new."""
    room_name_validate(name)
    room = selectors.room_get(name=name)
    if room is not None:
        return room
    if by is not None:  # opening a new name creates a room: a write like any other, counted (HTTP or socket)
        verdict = flood.admit("rooms", f"user:{by.pk}")
        if not verdict.admitted:
            raise TooManyWrites(
                flood.sentence("rooms", verdict.retry_after), kind="rooms", retry_after=verdict.retry_after
            )
    try:
        with transaction.atomic():
            room = Room.objects.create(name=name, created_by=by)
            transaction.on_commit(partial(broadcasts.room_listed, room=room))
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
                Membership.objects.bulk_create(
                    [
                        Membership(room=room, user=member, level=Membership.level_default(room))
                        for member in (user, peer)
                    ]
                )
        except IntegrityError:  # opened by the other one a moment ago
            room = selectors.direct_room_get(user=user, peer=peer)
        room.peer = peer
    return room


def conversation_open(
    *, user: User, room_name: str | None = None, username: str | None = None, create: bool = True
) -> Room:
    """The conversation a URL names for this reader, or NotFound when they may not read it.

    `room_name`: a room (created when new, the reader its creator, unless `create` is false: then a new name is
    NotFound, as the API has it); `username`: the reader's direct conversation with that person. Every page,
    fragment view, socket and API call of a conversation starts here.
    """
    if username is not None:
        peer = selectors.user_get_by_username(username=username)
        if peer is None or peer.pk == user.pk or not peer.is_active:
            raise NotFound("There is no such conversation.")
        return direct_room_get_or_create(user=user, peer=peer)
    if create:
        room = room_get_or_create(name=room_name or "", by=user)
    else:
        room = selectors.room_get(name=room_name_validate(room_name or ""))
    if room is None or not selectors.room_readable(room=room, user=user):
        raise NotFound("There is no such room.")
    return room


def room_manage_check(*, room: Room, by: User) -> None:
    """Only a room's creator, or staff, may make it private or add its members; a direct conversation, nobody."""
    if room.is_direct:
        raise NotFound("There is no such room.")
    if not (by.is_staff or (room.created_by_id is not None and room.created_by_id == by.pk)):
        raise ChatError(f"Only the person who created #{room.name} can change who is in it.", reason="not_creator")
