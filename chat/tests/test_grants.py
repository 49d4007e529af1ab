"""A socket's grant, checked before each of its writes in one query: the same answers as the batch recheck."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from accounts.models import User
from chat import services
from chat.grants import (
    GRANT_ACCESS_WITHDRAWN,
    GRANT_SESSION_ENDED,
    SocketGrant,
    socket_grant_revoked,
    socket_grants_revoked,
)
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db


def logged_in(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.session.session_key


def both(grant: SocketGrant) -> tuple[int | None, int | None]:
    """The one-query check's answer, and the batch recheck's."""
    return socket_grant_revoked(grant=grant), socket_grants_revoked(grants=[grant]).get(grant)


def test_a_socket_whose_session_and_room_hold_may_write_for_one_query(alice, django_assert_num_queries):
    room = services.rooms.room_get_or_create(name="lobby", by=alice)
    grant = SocketGrant(session_key=logged_in(alice), user_id=alice.pk, room_id=room.pk)
    with django_assert_num_queries(1):
        assert socket_grant_revoked(grant=grant) is None
    assert both(grant) == (None, None)


def test_a_session_that_ended_expired_or_logs_in_someone_else_ends_the_socket(alice, bob):
    room = services.rooms.room_get_or_create(name="lobby", by=alice)
    ended = SocketGrant(session_key="no-such-session", user_id=alice.pk, room_id=room.pk)
    assert both(ended) == (GRANT_SESSION_ENDED, GRANT_SESSION_ENDED)
    expired_key = logged_in(alice)
    Session.objects.filter(session_key=expired_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    expired = SocketGrant(session_key=expired_key, user_id=alice.pk, room_id=room.pk)
    assert both(expired) == (GRANT_SESSION_ENDED, GRANT_SESSION_ENDED)
    someone_else = SocketGrant(session_key=logged_in(bob), user_id=alice.pk, room_id=room.pk)
    assert both(someone_else) == (GRANT_SESSION_ENDED, GRANT_SESSION_ENDED)


def test_a_changed_password_or_a_deactivated_account_ends_the_socket(alice):
    grant = SocketGrant(session_key=logged_in(alice), user_id=alice.pk)
    assert both(grant) == (None, None)
    alice.set_password("another-horse-battery-staple")
    alice.save()
    assert both(grant) == (GRANT_SESSION_ENDED, GRANT_SESSION_ENDED)
    grant = SocketGrant(session_key=logged_in(alice), user_id=alice.pk)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert both(grant) == (GRANT_SESSION_ENDED, GRANT_SESSION_ENDED)


def test_a_private_room_holds_for_its_members_only_and_a_deleted_room_for_nobody(alice, bob):
    room = services.rooms.room_get_or_create(name="secret", by=alice)
    Membership.objects.get_or_create(room=room, user=alice)
    Room.objects.filter(pk=room.pk).update(kind=Room.Kind.PRIVATE)
    member = SocketGrant(session_key=logged_in(alice), user_id=alice.pk, room_id=room.pk)
    outsider = SocketGrant(session_key=logged_in(bob), user_id=bob.pk, room_id=room.pk)
    assert both(member) == (None, None)
    assert both(outsider) == (GRANT_ACCESS_WITHDRAWN, GRANT_ACCESS_WITHDRAWN)
    Room.objects.filter(pk=room.pk).delete()
    assert both(member) == (GRANT_ACCESS_WITHDRAWN, GRANT_ACCESS_WITHDRAWN)
