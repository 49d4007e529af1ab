"""Directory news: the messages of listed rooms, gathered per room and told to this process's directories once a
tick, as one frame per room (its last activity, and one unread mark per message each reader did not write)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from chat import fragments
from chat.events import RoomActivity, RoomNews, RoomOnlineCounted
from chat.groups import DIRECTORY_GROUP
from chat.hub.subscriptions import Subscriptions
from chat.models import Room

# How often the directories hear of a room's new messages (one frame per room with news, however many came).
DIRECTORY_TICK_SECONDS = 1.0


@dataclass
class DirectoryNews:
    """A room's messages since this process's directories last heard of it."""

    room: Room
    last_message_at: float
    # (message id, author id) of each.
    messages: list[tuple[int, int]] = field(default_factory=list)


class DirectoryDesk(Subscriptions):
    """Gathers each listed room's news between ticks."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.directory_news: dict[int, DirectoryNews] = {}
        # Each listed room's latest online count since the last presence tick (any process may announce one).
        self.directory_counts: dict[int, RoomOnlineCounted] = {}

    def directory_note(self, event: RoomNews) -> None:
        """One more message in a listed room, for the directories' next tick."""
        news = self.directory_news.get(event.room_id)
        if news is None:
            room = Room(pk=event.room_id, name=event.room_name)
            news = self.directory_news[event.room_id] = DirectoryNews(room=room, last_message_at=event.created_at)
        news.last_message_at = max(news.last_message_at, event.created_at)
        news.messages.append((event.message_id, event.author_id))

    async def directory_announce(self) -> None:
        """Each room's news as one frame for this process's directories (RoomDirectoryConsumer adds the marks)."""
        news, self.directory_news = self.directory_news, {}
        if DIRECTORY_GROUP not in self.members:
            return
        for item in news.values():
            last_message_at = datetime.fromtimestamp(item.last_message_at, tz=UTC)
            activity = RoomActivity(
                room_id=item.room.pk,
                html=fragments.directory_activity(room=item.room, last_message_at=last_message_at),
                news_html=fragments.directory_unread_one_more(room=item.room),
                messages=sorted(item.messages),
            )
            await self.fan_out(DIRECTORY_GROUP, activity)

    def directory_count_note(self, event: RoomOnlineCounted) -> None:
        """A listed room's new online count, for the next presence tick: the latest one of the tick wins."""
        if DIRECTORY_GROUP in self.members:
            self.directory_counts[event.room_id] = event

    def directory_count_drop(self, room_id: int) -> None:
        """The room left the directories: its gathered count goes nowhere."""
        self.directory_counts.pop(room_id, None)

    async def directory_counts_announce(self) -> None:
        """One count per room per tick, only to the directories that list the room (a page's `listed`), or that are
        making their list (they hold it until the list is out)."""
        if not self.directory_counts:
            return
        counts, self.directory_counts = self.directory_counts, {}
        directories = list(self.members.get(DIRECTORY_GROUP, ()))
        for socket in directories:
            listed = getattr(socket, "listed", ())
            holding = getattr(socket, "held", None) is not None
            for room_id, event in counts.items():
                if holding or room_id in listed:
                    frame = socket.frame_for(event)
                    if frame is not None:
                        await socket.deliver(frame)
