"""The socket of the room directory page: online counts, last activity and new rooms, live; and the sidebar."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from chat import fragments, selectors
from chat.consumers.base import CLOSE_UNAUTHENTICATED, HubConsumer, socket_log_fields
from chat.events import Fragment, MentionFlagged, RoomActivity, RoomListed, RoomOnlineCounted, RoomUnlisted
from chat.groups import DIRECTORY_GROUP, directory_user_group, session_group
from chat.models import Membership
from chat.transport import Frame

# One logger for every socket, "chat.consumers" (README, "Logs").
logger = logging.getLogger(__package__)


class RoomDirectoryConsumer(HubConsumer):
    """The room directory page."""

    listed_up_to = 0
    # The rooms this page lists: news of any other room has nothing to update on it.
    listed: set[int]
    # The listed rooms the user had joined when the list was made: the rows with an unread count to add to.
    counting: set[int]

    async def connect(self) -> None:
        """Join the directory's groups and send this page of the list and the sidebar again (it may have been away)."""
        await self.accept()
        if not self.user.is_authenticated:
            logger.info(
                "socket refused",
                extra=socket_log_fields(self.scope, reason="anonymous", close_code=CLOSE_UNAUTHENTICATED),
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # The page's own query (the socket's URL carries it): the list it shows, and whether new rooms go on it.
        self.grant_make()
        self.listed, self.counting = set(), set()
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        self.page, self.query = query.get("page", ["1"])[0], query.get("q", [""])[0].strip()[:50]
        groups = [
            DIRECTORY_GROUP,
            directory_user_group(self.user.pk),
            session_group(self.scope["session"]),
            *await self.sidebar_groups(),
        ]
        await self.hub_join(groups)
        await self.send_snapshot(database_sync_to_async(self.room_list))
        logger.info("socket connected", extra=socket_log_fields(self.scope))

    def room_list(self) -> str:
        """This page of the list and the sidebar; the newest message id the list counts (news up to it is in it)."""
        self.listed_up_to = selectors.message_latest_id()
        rooms = selectors.room_directory(user=self.user, query=self.query, page=self.page)
        self.listed = {room.pk for room in rooms}
        self.counting = {room.pk for room in rooms if room.last_read_id is not None}
        live = fragments.connection(state="live")
        return fragments.directory_room_list(rooms=rooms) + self.sidebar_render() + live

    def page_title(self) -> str:
        return "Rooms"

    async def disconnect(self, code: int) -> None:
        await self.hub_leave()
        if self.user.is_authenticated:
            logger.info("socket disconnected", extra=socket_log_fields(self.scope, close_code=code))

    def frame_for(self, event: Fragment) -> Frame | None:
        """HTML rendered once for every directory, with an unread mark per message this user did not write."""
        if self.held is not None:  # the page's list is not out yet: it comes first
            self.held.append(event)
            return None
        if self.session_ended:
            return None
        match event:
            case RoomListed():
                if self.query or self.page != "1":  # new rooms go on top of the first page
                    return None
                self.listed.add(event.room_id)
            case RoomUnlisted() | RoomOnlineCounted() | MentionFlagged() | RoomActivity() if (
                event.room_id not in self.listed
            ):
                return None
            case MentionFlagged() if self.sidebar_levels.get(event.room_id) == Membership.Level.NOTHING:
                return None
            case RoomActivity():
                # A list made after some of these messages counts them already (or its user saw them); a muted
                # room counts nothing.
                muted = self.sidebar_levels.get(event.room_id) == Membership.Level.NOTHING
                if muted or event.room_id not in self.counting:
                    return event.frame()
                return event.frame_with_news(event.news_for(self.user_id, after=self.listed_up_to))
        return event.frame()
