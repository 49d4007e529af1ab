"""What happens, as the processes tell each other: one typed value per kind of event, all defined here.

The services publish events through chat.broadcasts once a change is committed; each process's hub (chat.hub)
decodes an event once and dispatches on its type. On the channel layer an event travels as a dict,
``{"type": <its kind>, "group": <the group it was sent to>, **its fields}``: what a layer can carry.

An event that carries `html` was rendered once, without a reader, and goes to every page that shows it as it is;
its frame is made at most once per process (`Fragment.frame`). What a page does with each kind is its consumer's
business (chat.consumers), never a key of the event's.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

from chat.transport import Frame

logger = logging.getLogger(__name__)

KINDS: dict[str, type[Event]] = {}


@dataclasses.dataclass(kw_only=True, eq=False)
class Event:
    """Something that happened, for the pages of one group."""

    kind: ClassVar[str] = ""
    # A security decision: a publish that fails is never passed over in silence (chat.broadcasts). Any other event
    # is a live update, which a page gets again when its socket reconnects.
    required: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            KINDS[cls.kind] = cls

    def to_wire(self, group: str) -> dict[str, object]:
        """The event as the channel layer carries it."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {"type": self.kind, "group": group, **fields}


def from_wire(message: dict) -> tuple[str, Event] | None:
    """The group and event a layer message carries; None for a kind this process does not know (a newer peer's)."""
    cls = KINDS.get(message.get("type", ""))
    if cls is None:
        logger.warning("unknown event dropped", extra={"event_type": message.get("type")})
        return None
    names = {field.name for field in dataclasses.fields(cls)}
    return message["group"], cls(**{name: value for name, value in message.items() if name in names})


@dataclasses.dataclass(kw_only=True, eq=False)
class Fragment(Event):
    """An event whose HTML every page that shows it receives unchanged (swapped in out of band by element id)."""

    html: str

    def __post_init__(self) -> None:
        self._frame: Frame | None = None

    def frame(self) -> Frame:
        """The frame of the HTML, made once for every socket of this process it goes to."""
        if self._frame is None:
            self._frame = Frame(self.html)
        return self._frame


# A conversation's log


@dataclasses.dataclass(kw_only=True, eq=False)
class MessageAppended(Fragment):
    """A new message, at the end of every log of its conversation; a whisper of a direct conversation's message in
    the two people's room pages (`whisper_of`: that conversation, whose own pages have it already)."""

    kind = "message.appended"
    message_id: int
    whisper_of: int | None = None
    # A reply: the first message of its thread, whose thread pages alone show it.
    thread_id: int | None = None


@dataclasses.dataclass(kw_only=True, eq=False)
class MessageReplaced(Fragment):
    """A message edited, retracted or reacted to, replaced wherever it shows."""

    kind = "message.replaced"
    whisper_of: int | None = None
    message_id: int = 0
    thread_id: int | None = None


@dataclasses.dataclass(kw_only=True, eq=False)
class MessagesRemoved(Fragment):
    """Messages deleted by a moderator, removed wherever they show."""

    kind = "messages.removed"
    thread_id: int | None = None


@dataclasses.dataclass(kw_only=True, eq=False)
class ThreadSummaryChanged(Fragment):
    """A thread's reply count, last reply and last repliers, on its first message wherever that shows."""

    kind = "thread.summary"
    thread_id: int


@dataclasses.dataclass(kw_only=True, eq=False)
class TypingNoticed(Fragment):
    """Someone is typing: for everyone in the conversation but them. Nothing is stored."""

    kind = "typing.noticed"
    typist_id: int


@dataclasses.dataclass(kw_only=True, eq=False)
class RoomStatusChanged(Fragment):
    """A moderator closed a room for posting, or opened it again."""

    kind = "room.status_changed"
    read_only: bool


@dataclasses.dataclass(kw_only=True, eq=False)
class AccessChanged(Event):
    """Who may read a conversation changed: a page of anyone else closes."""

    kind = "access.changed"
    required = True
    members_only: bool
    member_ids: list[int]


# Who is online


@dataclasses.dataclass(kw_only=True, eq=False)
class PresenceChanged(Event):
    """Who arrived in a room and who left it, as one process saw it during one tick."""

    kind = "presence.changed"
    arrived: list[tuple[int, str]]
    departed: list[int]


@dataclasses.dataclass(kw_only=True, eq=False)
class OnlineListChanged(Fragment):
    """A room's arrivals and departures as this process's pages show them (made by each hub, never published)."""

    kind = "online.changed"


# The directory


@dataclasses.dataclass(kw_only=True, eq=False)
class RoomListed(Fragment):
    """A new room, or a room made public: at the top of every directory's first page."""

    kind = "room.listed"
    room_id: int


@dataclasses.dataclass(kw_only=True, eq=False)
class RoomUnlisted(Fragment):
    """A room made private: gone from every directory."""

    kind = "room.unlisted"
    room_id: int


@dataclasses.dataclass(kw_only=True, eq=False)
class RoomOnlineCounted(Fragment):
    """How many people a listed room has online now."""

    kind = "room.online_counted"
    room_id: int


@dataclasses.dataclass(kw_only=True, eq=False)
class RoomNews(Event):
    """A message in a listed room: each hub gathers these for its directories' next tick."""

    kind = "room.news"
    room_id: int
    room_name: str
    message_id: int
    author_id: int
    created_at: float


@dataclasses.dataclass(kw_only=True, eq=False)
class RoomActivity(Fragment):
    """A room's news of one tick as this process's directories show it: its last activity, and an unread mark for
    each message (`news_html`, once per message a reader did not write). Made by each hub, never published."""

    kind = "room.activity"
    room_id: int
    news_html: str
    # (message id, author id) of each message, oldest first.
    messages: list[tuple[int, int]]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._frames: dict[int, Frame] = {}

    def frame_with_news(self, news: int) -> Frame:
        """The frame with `news` unread marks, made once per count."""
        if news <= 0:
            return self.frame()
        frame = self._frames.get(news)
        if frame is None:
            frame = self._frames[news] = Frame(self.html + self.news_html * news)
        return frame

    def news_for(self, user_id: int, *, after: int = 0) -> int:
        """How many of these messages are news to this reader: not theirs, and not in a list made after them."""
        return sum(1 for message_id, author_id in self.messages if message_id > after and author_id != user_id)


@dataclasses.dataclass(kw_only=True, eq=False)
class MentionFlagged(Fragment):
    """Someone was mentioned in a listed room: their directories flag it."""

    kind = "mention.flagged"
    room_id: int


# The sidebar


@dataclasses.dataclass(kw_only=True, eq=False)
class ConversationNews(Event):
    """A message in one of a member's conversations: one more on its sidebar badge (rendered by each hub)."""

    kind = "conversation.news"
    room_id: int
    message_id: int
    author_id: int
    mentioned: list[int]


@dataclasses.dataclass(kw_only=True, eq=False)
class ConversationJoined(Fragment):
    """The user is now in a conversation: its sidebar entry, and its news from now on."""

    kind = "conversation.joined"
    room_id: int
    unread: int = 0
    # What of it notifies the user (chat.models.Membership.Level): a new conversation's default.
    level: str = "mentions"


@dataclasses.dataclass(kw_only=True, eq=False)
class ConversationLeft(Fragment):
    """The user is no longer in a conversation: its sidebar entry goes."""

    kind = "conversation.left"
    room_id: int


@dataclasses.dataclass(kw_only=True, eq=False)
class ConversationRead(Event):
    """The user opened a conversation: nothing in it is unread any more on their other pages."""

    kind = "conversation.read"
    room_id: int


@dataclasses.dataclass(kw_only=True, eq=False)
class NotificationLevelChanged(Event):
    """The user set what a conversation notifies them of: their pages' sidebars and titles count again."""

    kind = "notification.level"
    room_id: int
    level: str


@dataclasses.dataclass(kw_only=True, eq=False)
class ThreadNews(Event):
    """A reply in a thread a user follows: one more unread reply on their pages (sent to each follower)."""

    kind = "thread.news"
    thread_id: int
    room_id: int
    message_id: int
    author_id: int


@dataclasses.dataclass(kw_only=True, eq=False)
class ThreadRead(Event):
    """The user opened a thread: its replies are read on their other pages."""

    kind = "thread.read"
    thread_id: int


# Sessions and this process's link to the others


@dataclasses.dataclass(kw_only=True, eq=False)
class SessionEnded(Event):
    """The session a socket was opened with has ended (logout, password changed, account deactivated or deleted);
    every socket of it closes, but those opened with `keep_session` (the session group of who changed a password)."""

    kind = "session.ended"
    required = True
    reason: str
    keep_session: str | None = None


@dataclasses.dataclass(kw_only=True, eq=False)
class LayerLost(Event):
    """This process's channel layer stopped answering (told by the hub to its own sockets, never published)."""

    kind = "layer.lost"


@dataclasses.dataclass(kw_only=True, eq=False)
class LayerBack(Event):
    """The layer answers again and every group is joined: pages catch up (never published)."""

    kind = "layer.back"
