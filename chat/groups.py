"""The channel-layer groups that pages listen on, named in one place (a conversation's own are on chat.models.Room)."""

from __future__ import annotations

import hashlib

from django.contrib.sessions.backends.base import SessionBase

# Every open room directory page.
DIRECTORY_GROUP = "directory"

# Kept in the session's data: it survives the key change of a password change (the tabs opened before it keep
# their socket), and goes with the session at logout.
SESSION_SOCKETS_KEY = "_chat_sockets"


def directory_user_group(user_id: int) -> str:
    """Every open directory page of one user."""
    return f"directory_user_{user_id}"


def user_group(user_id: int) -> str:
    """Every open socket of one user, in any conversation."""
    return f"user_{user_id}"


def session_group(session: SessionBase) -> str:
    """Every socket opened with one login session; never the session key itself.

    A session from before the id existed is known by its key (what the browser sent with the socket).
    """
    identity = session.get(SESSION_SOCKETS_KEY) or session.session_key or ""
    return "session_" + hashlib.sha256(identity.encode()).hexdigest()[:32]
