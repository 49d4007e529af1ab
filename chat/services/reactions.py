"""Reactions: one person's emoji on a message, toggled; every open page of the conversation sees the counts."""

from __future__ import annotations

from functools import partial

from django.db import transaction

from accounts.models import User
from chat import broadcasts
from chat.errors import ChatError
from chat.models import REACTION_EMOJI, Message, Reaction


def reaction_emoji_validate(emoji: str) -> str:
    """One of the eight emoji, also when typed without the variation selector (a bare heart)."""
    emoji = emoji.strip()
    for allowed in REACTION_EMOJI:
        if emoji in (allowed, allowed.removesuffix("\ufe0f")):
            return allowed
    raise ChatError(f"React with one of {' '.join(REACTION_EMOJI)}.", reason="bad_emoji")


def reaction_toggle(*, message: Message, user: User, emoji: str) -> Message:
    """Give the user's reaction with this emoji to the message, or take it back; every open page sees the counts."""
    emoji = reaction_emoji_validate(emoji)
    if message.retracted_at is not None:
        raise ChatError("That message was deleted.", reason="retracted")
    if message.room.read_only:
        raise ChatError(f"#{message.room.name} is read-only: nothing in it can change now.", reason="room_read_only")
    with transaction.atomic():
        # The message's row is the lock: two toggles at once cannot both rewrite its summary from stale rows.
        Message.objects.select_for_update().filter(pk=message.pk).values_list("pk").get()
        taken_back, _ = Reaction.objects.filter(message=message, user=user, emoji=emoji).delete()
        if not taken_back:
            Reaction.objects.create(message=message, user=user, emoji=emoji)
        summary: dict[str, list[int]] = {}
        for given, user_id in Reaction.objects.filter(message=message).order_by("id").values_list("emoji", "user_id"):
            summary.setdefault(given, []).append(user_id)
        Message.objects.filter(pk=message.pk).update(reactions_summary=summary)
        message.reactions_summary = summary
        transaction.on_commit(partial(broadcasts.reactions_changed, message=message))
    return message
