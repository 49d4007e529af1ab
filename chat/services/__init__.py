"""Writes: the rules of the chat, one module per domain. Each action stores first, then publishes on commit.

- `sessions`: which sockets a login owns, and closing them when it ends.
- `rooms`: room names, finding or creating a conversation, who may open it.
- `memberships`: joining, leaving, members, privacy, read marks, notification levels.
- `threads`: a reply's thread, its summary, who follows it and how far each has read it.
- `emails`: the missed messages emailed a while later (the worker's task), and whether a person wants them.
- `bots`: which bots a new message is for, and calling a bot's webhook with it (the answer is posted by `messages`).
- `messages`: parsing what was typed, storing, editing and retracting messages (and replies).
- `reactions`, `attachments`: what can be added to a message.
- `storage`: the files attachments keep.
- `moderation`: deleting messages and closing rooms, for staff.

Imports go one way: a module here may import the ones listed before it, chat.broadcasts and everything below.
"""

from chat.services import (
    attachments,
    bots,
    emails,
    memberships,
    messages,
    moderation,
    reactions,
    rooms,
    sessions,
    storage,
    threads,
)

__all__ = [
    "attachments",
    "bots",
    "emails",
    "memberships",
    "messages",
    "moderation",
    "reactions",
    "rooms",
    "sessions",
    "storage",
    "threads",
]
