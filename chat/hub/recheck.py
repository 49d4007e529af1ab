"""Sockets fail closed: every `CHAT_SOCKET_RECHECK_SECONDS`, and as soon as the layer is back, this process checks
its local sockets' sessions and access in one batch (a few queries, never one per socket) and closes those whose
right to exist has gone, whether or not the notice of it ever arrived."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from chat.grants import socket_grants_revoked
from chat.hub.subscriptions import Subscriptions

logger = logging.getLogger(__name__)


class Recheck(Subscriptions):
    """When this process's sockets were last checked, and the check."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.rechecked_at = asyncio.get_running_loop().time()

    def recheck_soon(self) -> None:
        """Check at the next tick, not at the next period (what was published meanwhile may never arrive)."""
        self.rechecked_at = float("-inf")

    def recheck_due(self) -> bool:
        return asyncio.get_running_loop().time() - self.rechecked_at >= settings.CHAT_SOCKET_RECHECK_SECONDS

    async def recheck(self) -> None:
        """Close every local socket whose session ended or whose conversation it may no longer read."""
        self.rechecked_at = asyncio.get_running_loop().time()
        sockets = {socket for members in self.members.values() for socket in members if socket.grant is not None}
        if not sockets:
            return
        grants = {socket.grant for socket in sockets}
        revoked = await database_sync_to_async(socket_grants_revoked)(grants=grants)
        if revoked:
            logger.info("sockets rechecked", extra={"sockets": len(sockets), "revoked": len(revoked)})
        for socket in sockets:
            code = revoked.get(socket.grant)
            if code is not None:
                await socket.revoke(code)
