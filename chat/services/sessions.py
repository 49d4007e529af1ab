"""Which sockets a login owns, and closing them when the login ends."""

from __future__ import annotations

import secrets
from functools import partial

from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction

from accounts.models import User
from chat import broadcasts
from chat.groups import SESSION_SOCKETS_KEY, session_group


def session_sockets_mark(*, session: SessionBase) -> None:
    """Give a newly logged-in session the id its sockets are grouped by (kept if it has one)."""
    if SESSION_SOCKETS_KEY not in session:
        session[SESSION_SOCKETS_KEY] = secrets.token_hex(16)


def session_sockets_close(*, session: SessionBase, reason: str = "logout") -> None:
    """Close every socket opened with this session (room and directory pages), on any server process, on commit."""
    transaction.on_commit(partial(broadcasts.session_ended, group=session_group(session), reason=reason))


def user_sockets_close(*, user: User, reason: str, keep_session: SessionBase | None = None) -> None:
    """Close every socket of the user on any server process, on commit, but those of `keep_session`."""
    keep = session_group(keep_session) if keep_session is not None else None
    transaction.on_commit(partial(broadcasts.user_sessions_ended, user_id=user.pk, reason=reason, keep_session=keep))
