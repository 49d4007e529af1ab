"""Committed changes become events: each rendered once, without a reader, and published through one function.

The services call these from `transaction.on_commit`, so nobody ever sees what was rolled back. Every event goes
through `send`, which decides what a failed publish means by the event's kind (chat.events):

- a live update (a message, a reaction, who is online, a sidebar badge) may be lost: the page gets it again when its
  socket reconnects. The failure is logged as a warning, and a caller that must tell someone is told (False).
- a security decision (a session ended, access withdrawn) is never passed over in silence: it is logged as an
  error and kept, and this process's hub publishes it again when the layer answers (chat.hub.recovery).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from accounts.models import User
from chat import fragments, selectors
from chat.errors import DeliveryError
from chat.events import (
    AccessChanged,
    ConversationJoined,
    ConversationLeft,
    ConversationNews,
    ConversationRead,
    Event,
    MentionFlagged,
    MessageAppended,
    MessageReplaced,
    MessagesRemoved,
    NotificationLevelChanged,
    RoomListed,
    RoomNews,
    RoomStatusChanged,
    RoomUnlisted,
    SessionEnded,
    ThreadNews,
    ThreadRead,
    ThreadSummaryChanged,
)
from chat.groups import DIRECTORY_GROUP, directory_user_group, user_group
from chat.models import Membership, Message, Room

logger = logging.getLogger(__name__)

# A publish or a subscription that the layer has not taken within this is given up, as if the layer were down: a
# partition (packets dropped, not refused) must not hold channels' one database thread or a hub's loop.
LAYER_TIMEOUT_SECONDS = 2.0

# Security events whose publish failed, oldest first, for the hub to publish again (group, event).
_undelivered: list[tuple[str, Event]] = []
_undelivered_lock = threading.Lock()


# After a publish times out, live updates are not tried again on that layer for this long (or until a hub sees it
# answer again): during a partition each try would hold the database thread for LAYER_TIMEOUT_SECONDS. Security
# events are always tried.
LAYER_PAUSE_SECONDS = 5.0
_paused_until: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()


async def send(event: Event, *groups: str) -> bool:
    """Publish the event to each group; whether every publish went (the failure policy is the event's kind)."""
    layer = None
    for index, group in enumerate(groups):
        try:
            layer = get_channel_layer()
            if not event.required and time.monotonic() < _paused_until.get(layer, 0.0):
                logger.debug("not delivered live: the layer failed a moment ago", extra={"event_type": event.kind})
                return False
            async with asyncio.timeout(LAYER_TIMEOUT_SECONDS):
                await layer.group_send(group, event.to_wire(group))
        except Exception as error:  # the layer's errors depend on its backend (Redis, in-memory)
            if layer is not None and isinstance(error, TimeoutError):  # a refusal fails fast: no need to pause
                _paused_until[layer] = time.monotonic() + LAYER_PAUSE_SECONDS
            fields = {"event_type": event.kind, "group": group, "reason": type(error).__name__}
            if not event.required:
                logger.warning("not delivered live", extra=fields)
                return False
            logger.error("security event not delivered; kept to publish again", extra=fields)
            with _undelivered_lock:
                _undelivered.extend((later, event) for later in groups[index:])
            return False
    if layer is not None:
        _paused_until.pop(layer, None)
    return True


publish = async_to_sync(send)


async def send_in_turn(steps: Iterable[tuple[Event, str]], then: Iterable[tuple[Event, str]] = ()) -> bool:
    """Publish each (event, group) in order, none once one has failed; whether they all went. Then, only if they
    did, each of `then`, whatever it answers."""
    for event, group in steps:
        if not await send(event, group):
            return False
    for event, group in then:
        await send(event, group)
    return True


publish_in_turn = async_to_sync(send_in_turn)


# A socket's post hands its room message's publishes to its event loop instead of waiting for them on channels' one
# database thread (`deliveries_handed_over`): (loop, the futures handed over) while in it, on this thread.
_handover = threading.local()
# Per event loop, per room: the publishing of the room's latest message handed over, which the next one waits for.
_room_latest: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Task]] = (
    weakref.WeakKeyDictionary()
)


@contextmanager
def deliveries_handed_over(loop: asyncio.AbstractEventLoop | None) -> Iterator[list[concurrent.futures.Future]]:
    """While in it, a room message's publishes start on `loop` once those of the room's earlier messages are done
    (one order per room), and this thread goes on: each future of the list says whether its message went. Without a
    loop, they are waited for here."""
    handed: list[concurrent.futures.Future] = []
    _handover.value = (loop, handed) if loop is not None else None
    try:
        yield handed
    finally:
        _handover.value = None


def deliver_in_room_order(room_id: int, steps: list, then: list, done: concurrent.futures.Future) -> None:
    """On the loop, in the order the database thread handed them over: publish after the room's previous message."""
    latest = _room_latest.setdefault(asyncio.get_running_loop(), {})
    task = asyncio.ensure_future(send_after(latest.get(room_id), steps, then))
    latest[room_id] = task

    def finished(task: asyncio.Task) -> None:
        if latest.get(room_id) is task:
            del latest[room_id]
        if done.cancelled():  # its socket went away meanwhile: nobody to tell
            return
        if task.cancelled():
            done.set_result(False)
        elif task.exception() is not None:
            done.set_exception(task.exception())
        else:
            done.set_result(task.result())

    task.add_done_callback(finished)


async def send_after(previous: asyncio.Task | None, steps: list, then: list) -> bool:
    if previous is not None:
        await asyncio.wait([previous])  # its outcome is its own author's to hear
    return await send_in_turn(steps, then)


def layer_answers(layer: object) -> None:
    """The layer answers again (a hub joined its groups): live updates are tried again at once, not after the pause."""
    _paused_until.pop(layer, None)


def undelivered_take() -> list[tuple[str, Event]]:
    """The security events still to publish, handed over once."""
    with _undelivered_lock:
        taken = _undelivered[:]
        _undelivered.clear()
    return taken


# Sessions


def session_ended(*, group: str, reason: str) -> None:
    """Close every socket opened with one session (its group: chat.groups.session_group)."""
    publish(SessionEnded(reason=reason), group)


def user_sessions_ended(*, user_id: int, reason: str, keep_session: str | None) -> None:
    """Close every socket of the user (room pages and directories), but those of `keep_session`'s group."""
    event = SessionEnded(reason=reason, keep_session=keep_session)
    publish(event, user_group(user_id), directory_user_group(user_id))


# Rooms and who is in them


def access_changed(*, room: Room) -> None:
    """Tell the room's sockets who may still read it: the others close with 4003 (chat.consumers)."""
    member_ids = selectors.room_member_ids(room=room)
    publish(AccessChanged(members_only=room.kind != Room.Kind.PUBLIC, member_ids=member_ids), room.group_name)


def room_listed(*, room: Room) -> None:
    """Show a new (or newly public) room at the top of every open directory's first page."""
    publish(RoomListed(room_id=room.pk, html=fragments.directory_room_added(room=room)), DIRECTORY_GROUP)


def room_unlisted(*, room: Room) -> None:
    publish(RoomUnlisted(room_id=room.pk, html=fragments.directory_room_removed(room=room)), DIRECTORY_GROUP)


def room_status_changed(*, room: Room) -> None:
    """Tell every socket of the room whether it is read-only, with the line its page shows.

    Lost, the sockets read it again when they reconnect; until then they still accept posts.
    """
    publish(RoomStatusChanged(read_only=room.read_only, html=fragments.room_status(room=room)), room.group_name)


def conversation_joined(*, room: Room, user: User, unread: int = 0) -> None:
    """Show a conversation the user is now in on the sidebars of their open pages, which then hear its news."""
    if room.is_direct and room.peer is None:
        room.peer = selectors.direct_peer(room=room, user=user)
    event = ConversationJoined(
        room_id=room.pk,
        unread=unread,
        level=Membership.level_default(room),
        html=fragments.sidebar_entry_added(room=room, unread=unread),
    )
    publish(event, user_group(user.pk), directory_user_group(user.pk))


def conversation_read(*, room_id: int, user_id: int) -> None:
    """The user opened the conversation: their other pages' badges and titles stop counting it."""
    publish(ConversationRead(room_id=room_id), user_group(user_id), directory_user_group(user_id))


def notification_level_changed(*, room_id: int, user_id: int, level: str) -> None:
    publish(NotificationLevelChanged(room_id=room_id, level=level), user_group(user_id), directory_user_group(user_id))


def conversation_left(*, room: Room, user_ids: Iterable[int]) -> None:
    event = ConversationLeft(room_id=room.pk, html=fragments.sidebar_entry_removed(room=room))
    for user_id in user_ids:
        publish(event, user_group(user_id), directory_user_group(user_id))


# Messages


def message_groups(*, message: Message) -> list[tuple[str, int | None]]:
    """The groups that show a message, each with the conversation it is a whisper of there (or None): the
    conversation's pages, and for a direct conversation's message the two people's other pages too."""
    groups: list[tuple[str, int | None]] = [(message.room.group_name, None)]
    if message.is_private:
        groups += [
            (user_group(message.recipient_id), message.room_id),
            (user_group(message.author_id), message.room_id),
        ]
    return groups


def message_posted(*, message: Message, first: bool = False) -> None:
    """Render the message once and send it to its conversation's pages (and a direct one's as a whisper to the two
    people's other pages); then the news to the members' sidebars and, for a public room, to the directories.

    `first`: the first message of a direct conversation, which puts it in both people's sidebars. The message is
    stored: a failure here raises DeliveryError, which tells its author. A reply goes to its thread (reply_posted).
    """
    if message.parent_id is not None:
        reply_posted(message=message)
        return
    room = message.room
    # The first of its day comes after a day separator; one following its author's within the same ten minutes
    # is shown as part of theirs (as the log's template groups them).
    previous = selectors.message_previous(message=message)
    new_day = previous is None or timezone.localdate(previous[1]) != timezone.localdate(message.created_at)
    continued = (
        previous is not None and previous[0] == message.author_id and span(previous[1]) == span(message.created_at)
    )
    # The conversation's pages first; the rest is not tried once the layer has failed (its pages catch up anyway).
    steps: list[tuple[Event, str]] = []
    for group, whisper_of in message_groups(message=message):
        whisper = whisper_of is not None
        html = fragments.message_appended(
            message=message, whisper=whisper, new_day=new_day and not whisper, continued=continued and not whisper
        )
        steps.append((MessageAppended(html=html, message_id=message.pk, whisper_of=whisper_of), group))
    if not first:
        news = ConversationNews(
            room_id=room.pk, message_id=message.pk, author_id=message.author_id, mentioned=message.mentioned_ids
        )
        steps.append((news, room.sidebar_group))
    flags: list[tuple[Event, str]] = []
    if room.kind == Room.Kind.PUBLIC:
        news = RoomNews(
            room_id=room.pk,
            room_name=room.name,
            message_id=message.pk,
            author_id=message.author_id,
            created_at=message.created_at.timestamp(),
        )
        steps.append((news, DIRECTORY_GROUP))
        if message.mentioned_ids:
            flag = MentionFlagged(room_id=room.pk, html=fragments.directory_mentioned(room=room))
            flags = [(flag, directory_user_group(user_id)) for user_id in message.mentioned_ids]
    handover = getattr(_handover, "value", None)
    if handover is not None and not first:
        loop, handed = handover
        handed.append(concurrent.futures.Future())
        loop.call_soon_threadsafe(deliver_in_room_order, room.pk, steps, flags, handed[-1])
        return
    # One hop to the event loop for them all, not one per publish (this thread waits for each hop).
    delivered = publish_in_turn(steps, flags)
    if delivered and first:
        for user, peer in ((message.author, message.recipient), (message.recipient, message.author)):
            shown = Room(pk=room.pk, name=room.name, kind=room.kind, last_message_at=room.last_message_at)
            shown.peer = peer
            conversation_joined(room=shown, user=user, unread=0 if user.pk == message.author_id else 1)
    if not delivered:
        raise message_undelivered()


def message_undelivered() -> DeliveryError:
    return DeliveryError(
        "Your message is saved, but it could not be delivered live right now; "
        "others will see it when their page reconnects."
    )


def span(moment: datetime) -> str:
    """The ten-minute span of the day a message belongs to, in the current time zone."""
    local = timezone.localtime(moment)
    return f"{local:%Y%m%d%H}{local.minute // 10}"


def message_replaced(*, message: Message) -> None:
    """Replace an edited or retracted message in every page that shows it, rendered once (and once as a whisper)."""
    for group, whisper_of in message_groups(message=message):
        html = fragments.message_replaced(message=message, whisper=whisper_of is not None)
        event = MessageReplaced(html=html, whisper_of=whisper_of, message_id=message.pk, thread_id=message.parent_id)
        publish(event, group)


def reactions_changed(*, message: Message) -> None:
    """Replace the message's reactions in every page that shows it, rendered once."""
    html = fragments.reactions(message=message)
    for group, whisper_of in message_groups(message=message):
        event = MessageReplaced(html=html, whisper_of=whisper_of, message_id=message.pk, thread_id=message.parent_id)
        publish(event, group)


def removals_by_group(*, messages: Iterable[Message]) -> dict[str, list[int]]:
    """The ids of the messages each group's pages show."""
    removals: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        for group, _whisper_of in message_groups(message=message):
            removals[group].append(message.pk)
    return dict(removals)


def messages_removed(*, messages: Iterable[Message]) -> None:
    """Tell each group's open pages to drop those messages: one frame per group, however many messages; replies
    apart, one frame per thread (only its pages show them)."""
    messages = list(messages)
    threads: dict[int | None, list[Message]] = defaultdict(list)
    for message in messages:
        threads[message.parent_id].append(message)
    for thread_id, removed in threads.items():
        for group, message_ids in removals_by_group(messages=removed).items():
            html = fragments.messages_removed(message_ids=message_ids)
            publish(MessagesRemoved(html=html, thread_id=thread_id), group)


def reply_posted(*, message: Message) -> None:
    """A reply: to its thread's open pages, its summary to every page showing the thread's first message, and one
    more unread reply to each follower's pages. Never in the conversation's log, never a whisper."""
    parent, room = message.parent, message.room
    appended = MessageAppended(
        html=fragments.reply_appended(message=message), message_id=message.pk, thread_id=parent.pk
    )
    delivered = publish(appended, room.group_name)
    publish(ThreadSummaryChanged(html=fragments.thread_summary(message=parent), thread_id=parent.pk), room.group_name)
    news = ThreadNews(thread_id=parent.pk, room_id=room.pk, message_id=message.pk, author_id=message.author_id)
    for user_id in selectors.thread_follower_ids(parent=parent):
        if user_id != message.author_id:
            publish(news, user_group(user_id), directory_user_group(user_id))
    if not delivered:
        raise DeliveryError(
            "Your reply is saved, but it could not be delivered live right now; "
            "others will see it when their page reconnects."
        )


def thread_read(*, thread_id: int, user_id: int) -> None:
    publish(ThreadRead(thread_id=thread_id), user_group(user_id), directory_user_group(user_id))
