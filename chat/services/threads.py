"""Threads: a reply is a message with a parent in the same conversation; its thread's summary, who follows it, and
how far each follower has read it."""

from __future__ import annotations

from collections import defaultdict
from functools import partial

from django.db import transaction
from django.db.models import F

from accounts.models import User
from chat import broadcasts, selectors
from chat.errors import ChatError
from chat.models import THREAD_REPLIERS_SHOWN, Message, Room, ThreadFollow

NO_SUCH_THREAD = "There is no such message to reply to in this conversation; nothing was sent."


def thread_parent_check(*, room: Room, thread: object) -> Message:
    """The message a reply is for: one of this conversation's, not deleted, and not a reply itself."""
    parent_id = thread if isinstance(thread, int) else str(thread).strip()
    if isinstance(parent_id, str):
        if not parent_id.isdigit() or len(parent_id) > 18:
            raise ChatError(NO_SUCH_THREAD, reason="thread_unknown")
        parent_id = int(parent_id)
    parent = selectors.thread_parent(room=room, message_id=parent_id)
    if parent is None:
        raise ChatError(NO_SUCH_THREAD, reason="thread_unknown")
    if parent.parent_id is not None:
        raise ChatError("A reply cannot have replies: answer in its thread instead.", reason="thread_of_reply")
    if parent.retracted_at is not None:
        raise ChatError("That message was deleted: its thread takes no more replies.", reason="thread_retracted")
    return parent


def thread_reply_record(*, reply: Message, mentioned_ids: list[int]) -> None:
    """A reply was stored: its thread's summary counts it, and its author and whoever it mentions follow the thread
    (with its first reply, so do the first message's author and the people it mentions)."""
    parent = reply.parent
    repliers = [reply.author.username, *(name for name in parent.last_repliers if name != reply.author.username)]
    Message.objects.filter(pk=parent.pk).update(
        reply_count=F("reply_count") + 1,
        last_reply_at=reply.created_at,
        last_repliers=repliers[:THREAD_REPLIERS_SHOWN],
    )
    parent.refresh_from_db(fields=["reply_count", "last_reply_at", "last_repliers"])
    followers = {parent.author_id, *mentioned_ids}
    if parent.reply_count == 1:
        followers.update(parent.mentioned_ids)
    followers.discard(reply.author_id)
    ThreadFollow.objects.bulk_create(
        [ThreadFollow(user_id=user_id, thread=parent) for user_id in followers], ignore_conflicts=True
    )
    # Its author has read the thread up to their own reply.
    follow, created = ThreadFollow.objects.get_or_create(
        user=reply.author, thread=parent, defaults={"last_read_id": reply.pk}
    )
    if not created:
        ThreadFollow.objects.filter(pk=follow.pk, last_read_id__lt=reply.pk).update(last_read_id=reply.pk)


def thread_mark_read(*, parent: Message, user: User) -> None:
    """The user opened the thread: its replies are read (a follower's mark moves; others follow nothing)."""
    latest = selectors.thread_latest_reply_id(parent=parent)
    moved = ThreadFollow.objects.filter(user=user, thread=parent, last_read_id__lt=latest).update(last_read_id=latest)
    if moved:
        transaction.on_commit(partial(broadcasts.thread_read, thread_id=parent.pk, user_id=user.pk))


def thread_marks_advance(*, marks: dict[tuple[int, int], int]) -> None:
    """Move followers' marks forward: {(thread id, user id): the newest reply shown}, one UPDATE per thread and id."""
    users: dict[tuple[int, int], list[int]] = defaultdict(list)
    for (thread_id, user_id), message_id in marks.items():
        users[(thread_id, message_id)].append(user_id)
    with transaction.atomic():
        for (thread_id, message_id), user_ids in users.items():
            ThreadFollow.objects.filter(thread_id=thread_id, user_id__in=user_ids, last_read_id__lt=message_id).update(
                last_read_id=message_id
            )
