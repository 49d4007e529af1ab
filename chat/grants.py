"""Socket grants: what a socket was opened with, and whether its login and its access to its conversation still
hold (sockets fail closed: chat.consumers checks one before each write, chat.hub.recheck all of a process's in a
batch). Reads only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db import connection
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from accounts.models import User
from chat.models import Membership, Room


# What a socket was opened with: its login session, its user, the conversation it shows (None: the directory).
@dataclass(frozen=True)
class SocketGrant:
    session_key: str
    user_id: int
    room_id: int | None = None


# Close codes a socket gets when its grant no longer holds (chat.consumers).
GRANT_SESSION_ENDED = 4001
GRANT_ACCESS_WITHDRAWN = 4003


def socket_grants_revoked(*, grants: Iterable[SocketGrant]) -> dict[SocketGrant, int]:
    """The grants that no longer hold, each with its close code; a few queries however many grants.

    A session holds while it exists, has not expired, is still logged in as the socket's user, and carries the
    hash of that user's current password (as Django's own `get_user` checks), and the user is active. Access holds
    while the conversation exists and is public, or the user is one of its members.
    """
    grants = list(grants)
    if not grants:
        return {}
    sessions = sessions_data(session_keys={grant.session_key for grant in grants})
    users = {user.pk: user for user in get_user_model().objects.filter(pk__in={grant.user_id for grant in grants})}
    room_ids = {grant.room_id for grant in grants if grant.room_id is not None}
    kinds = dict(Room.objects.filter(pk__in=room_ids).values_list("pk", "kind")) if room_ids else {}
    closed = [room_id for room_id, kind in kinds.items() if kind != Room.Kind.PUBLIC]
    members = set(
        Membership.objects.filter(room_id__in=closed, user_id__in=users).values_list("room_id", "user_id")
        if closed
        else ()
    )
    revoked = {}
    for grant in grants:
        user = users.get(grant.user_id)
        data = sessions.get(grant.session_key)
        if user is None or not user.is_active or data is None or not session_logs_in(data, user):
            revoked[grant] = GRANT_SESSION_ENDED
        elif grant.room_id is not None and (
            grant.room_id not in kinds
            or (kinds[grant.room_id] != Room.Kind.PUBLIC and (grant.room_id, grant.user_id) not in members)
        ):
            revoked[grant] = GRANT_ACCESS_WITHDRAWN
    return revoked


def socket_grant_revoked(*, grant: SocketGrant) -> int | None:
    """One socket's grant, checked before each of its writes: its close code, or None while it holds.

    The same rules as `socket_grants_revoked`, in one statement with a database-backed session engine: the user's
    password and state, its session's data, its conversation's kind and whether it is a member. Written out: it runs
    with every message, and the ORM spent more building it than the database spent answering it.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore
    model = getattr(store, "get_model_class", None)
    if model is None:
        return socket_grants_revoked(grants=[grant]).get(grant)
    user_model, session_model = get_user_model(), model()
    name = connection.ops.quote_name

    def column(model: type, field: str) -> str:
        return name(model._meta.get_field(field).column)

    sql = (
        f"SELECT u.{column(user_model, 'password')}, u.{column(user_model, 'is_active')}, "
        f"(SELECT s.{column(session_model, 'session_data')} FROM {name(session_model._meta.db_table)} s "
        f"WHERE s.{column(session_model, 'session_key')} = %s AND s.{column(session_model, 'expire_date')} > %s), "
        f"(SELECT r.{column(Room, 'kind')} FROM {name(Room._meta.db_table)} r WHERE r.{column(Room, 'id')} = %s), "
        f"EXISTS(SELECT 1 FROM {name(Membership._meta.db_table)} m "
        f"WHERE m.{column(Membership, 'room')} = %s AND m.{column(Membership, 'user')} = %s) "
        f"FROM {name(user_model._meta.db_table)} u WHERE u.{column(user_model, 'id')} = %s"
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = [grant.session_key, now, grant.room_id, grant.room_id, grant.user_id, grant.user_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return GRANT_SESSION_ENDED
    password, is_active, session_data, room_kind, member = row
    user = user_model(pk=grant.user_id, password=password, is_active=bool(is_active))
    if not user.is_active or session_data is None or not session_logs_in(store().decode(session_data), user):
        return GRANT_SESSION_ENDED
    if grant.room_id is not None and (room_kind is None or (room_kind != Room.Kind.PUBLIC and not member)):
        return GRANT_ACCESS_WITHDRAWN
    return None


def sessions_data(*, session_keys: set[str]) -> dict[str, dict]:
    """The data of the sessions that still exist and have not expired, by key."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    model = getattr(store, "get_model_class", None)
    if model is not None:  # a database-backed engine: one query for them all
        found = model().objects.filter(session_key__in=session_keys, expire_date__gt=timezone.now())
        return {session.session_key: store().decode(session.session_data) for session in found}
    loaded = {key: store(key) for key in session_keys}
    return {key: session.load() for key, session in loaded.items() if session.exists(key)}


def session_logs_in(data: dict, user: User) -> bool:
    """Whether a session's data logs in this user with their current password (Django's `get_user` rule)."""
    if data.get(SESSION_KEY) != str(user.pk) or data.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return False
    stored = data.get(HASH_SESSION_KEY)
    return bool(stored) and constant_time_compare(stored, user.get_session_auth_hash())
