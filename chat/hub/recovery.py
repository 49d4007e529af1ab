"""Recovery after an outage of the channel layer: say so to every socket, join every group again once the layer
answers, publish the security events that could not go out, and let every page catch up, a few at a time in the
background while live events keep flowing. And the heartbeat: presence kept alive, group memberships renewed before
the layer lets them expire."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from chat import broadcasts
from chat.events import Event, LayerBack, LayerLost
from chat.hub.online import PresenceTicker
from chat.layer_groups import group_renewal_seconds, groups_add

logger = logging.getLogger(__name__)

# While the channel layer does not answer, the hub tries to join its groups again this often (seconds).
LAYER_RETRY_SECONDS = 2.0
# Groups added to the layer per round trip (a script per Redis shard).
GROUPS_ADD_BATCH = 1_000
# After an outage, pages catch up this many at a time (their snapshots share one database thread); the loop
# delivers live events between batches.
CATCH_UP_BATCH = 10


class MembershipsLost(Exception):
    """The layer no longer had group memberships this process holds and had not let expire: its data went (Redis
    restarted or was emptied), and events were missed."""


class Recovery(PresenceTicker):
    """Whether this process's layer answers, and what is done when it stops and when it comes back."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # The one task telling every socket the layer is lost, and the one letting them catch up after it.
        self.telling: asyncio.Task | None = None
        self.catching_up: asyncio.Task | None = None
        self.lost_at = 0.0

    def layer_lost(self, error: Exception | None) -> None:
        if not self.up:
            return
        self.up = False
        self.lost_at = asyncio.get_running_loop().time()
        logger.warning("channel layer unavailable", extra={"reason": type(error).__name__ if error else None})
        if self.catching_up is not None:  # its pages are told again when the layer is back
            self.catching_up.cancel()
        # A task, not an await: this is called from the middle of a join, a publish or the receive loop.
        self.telling = asyncio.get_running_loop().create_task(self.tell_every_socket(LayerLost()))

    def sockets(self) -> set:
        return {socket for members in self.members.values() for socket in members}

    async def tell_every_socket(self, event: Event) -> None:
        for socket in self.sockets():
            await socket.hub_event(event)

    async def catch_up(self) -> None:
        """Every page makes its snapshot again, a batch at a time: a page's live events are held only while its own
        snapshot is made (HubConsumer.send_snapshot), the others' keep coming."""
        sockets = list(self.sockets())
        for start in range(0, len(sockets), CATCH_UP_BATCH):
            batch = [socket for socket in sockets[start : start + CATCH_UP_BATCH] if not socket.session_ended]
            snapshots = (socket.hub_event(LayerBack()) for socket in batch)
            for result in await asyncio.gather(*snapshots, return_exceptions=True):
                if isinstance(result, Exception):
                    logger.error("page not caught up", exc_info=result)
            await asyncio.sleep(0)

    async def groups_add(self, *, due_only: bool = False) -> Exception | None:
        """Join every group of this process's sockets again (`due_only`: those whose membership is half way to
        expiring); the layer's error if it did not take them all."""
        now = time.time()
        renewal = group_renewal_seconds(self.layer)
        if due_only:
            if renewal is None:
                return None
            groups = [group for group in self.members if self.group_added_at.get(group, 0.0) <= now - renewal]
            if not groups and self.group_added_at:
                # At least the oldest, every heartbeat: it also tells whether the layer still answers (a partition
                # drops packets; nothing else may notice it) and still has this process's memberships.
                groups = [min(self.group_added_at, key=self.group_added_at.__getitem__)]
        else:
            groups = list(self.members)
        missing = 0
        try:
            for start in range(0, len(groups), GROUPS_ADD_BATCH):
                batch = groups[start : start + GROUPS_ADD_BATCH]
                async with asyncio.timeout(broadcasts.LAYER_TIMEOUT_SECONDS):
                    missing += await groups_add(self.layer, batch, self.channel)
                for group in batch:
                    if group in self.members:  # not left meanwhile
                        self.group_added_at[group] = now
        except Exception as error:  # the layer's errors depend on its backend; a timeout is a partition
            return error
        if due_only and missing:  # renewed before they could expire: they were lost, with what was sent to them
            return MembershipsLost(missing)
        return None

    async def heartbeat(self) -> None:
        """Keep this process's presence alive, and its group memberships before the layer lets them expire."""
        await super().heartbeat()
        if self.up and (error := await self.groups_add(due_only=True)) is not None:
            self.layer_lost(error)

    async def recover(self) -> None:
        """Every `LAYER_RETRY_SECONDS` while the layer is lost: join every group again once it answers, publish
        what could not go out, then let every socket catch up (in the background)."""
        now = asyncio.get_running_loop().time()
        if now - self.lost_at < LAYER_RETRY_SECONDS:
            return
        self.lost_at = now
        if await self.groups_add() is not None:  # still down
            return
        self.up = True
        broadcasts.layer_answers(self.layer)
        if not await self.undelivered_publish():
            return
        self.views_forget()
        self.recheck_soon()
        logger.info("channel layer back")
        if self.catching_up is not None:
            self.catching_up.cancel()
        self.catching_up = asyncio.get_running_loop().create_task(self.catch_up())

    async def undelivered_publish(self) -> bool:
        """Publish again the security events whose publish failed (chat.broadcasts); whether they all went.

        Every tick too: a publish from a request's thread can fail while this loop's own link stays up. One that
        fails again is kept again by broadcasts.send, for the next try.
        """
        delivered = True
        for group, event in broadcasts.undelivered_take():
            delivered &= await broadcasts.send(event, group)
        if not delivered:
            self.layer_lost(None)
        return delivered

    async def background_stop(self) -> None:
        for task in (self.telling, self.catching_up):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):  # cancelled
                    await task
