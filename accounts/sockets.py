"""Who is on a socket: channels' AuthMiddlewareStack, with the session and user lookup off the shared thread.

Channels runs every database call of every socket on one thread per process, in turn. A socket's handshake
waited there behind the other sockets' joins, and in a reconnect storm many waited past daphne's handshake
timeout and were dropped. The lookup only reads, so it runs on the loop's thread pool instead.
"""

from __future__ import annotations

from channels.auth import AuthMiddleware, get_user
from channels.db import DatabaseSyncToAsync
from channels.sessions import CookieMiddleware, SessionMiddleware


class SocketAuthMiddleware(AuthMiddleware):
    async def resolve_scope(self, scope: dict) -> None:
        scope["user"]._wrapped = await DatabaseSyncToAsync(get_user.func, thread_sensitive=False)(scope)


def SocketAuthMiddlewareStack(inner):
    return CookieMiddleware(SessionMiddleware(SocketAuthMiddleware(inner)))
