"""Bots: users marked `is_bot` whose messages go to a webhook (accounts.models.Bot), and whose webhook's answers come
back as their replies.

`message_bots` runs with each new message, in its transaction, and names the bots it is for: a bot it mentions, or
the bot a direct message is sent to; never any for a bot's own message (no bot answers a bot, so none loops). It reads
only users message_create already loaded: a message for no bot costs no query. messages.message_create enqueues
`bot_message_deliver` (defined there, beside message_post, which posts the answer) for each.

`bot_answer_fetch` is that task's work: it POSTs the message to the bot's webhook (chat.webhooks: guarded, signed)
and returns the answer to post, in the conversation the message was in, in its thread if it was a reply. A refused
or failed call is logged as a warning and never tried again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder

from accounts.models import Bot, User
from chat import selectors
from chat.api_schemas import message_out
from chat.models import Message, Room
from chat.webhooks import WebhookFailed, WebhookRefused, webhook_deliver

logger = logging.getLogger(__name__)


def message_bots(*, message: Message, mentioned: list[User] | None) -> list[int]:
    """The ids of the bots a new message is for (users already loaded: no query)."""
    if message.author.is_bot:
        return []
    if message.recipient is not None:
        recipient = message.recipient
        return [recipient.pk] if recipient.is_bot and recipient.is_active else []
    return [user.pk for user in mentioned or () if user.is_bot and user.is_active]


@dataclass(frozen=True)
class BotAnswer:
    """What a bot answered, and where it goes: the message's conversation, in its thread if it was a reply."""

    bot: User
    room: Room
    thread: int | None
    text: str


def bot_payload(*, message: Message, room: Room, bot: User) -> dict[str, object]:
    """The JSON a bot's webhook receives (docs/api.md, "Bots"): the message as the API writes it, for this bot."""
    data = {"event": "message", "bot": bot.username, "message": message_out(message, room=room)}
    # Times as the API writes them (ISO 8601); webhook_deliver encodes plain JSON.
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def bot_answer_fetch(*, message_id: int, bot_user_id: int) -> BotAnswer | None:
    """Send the message to the bot's webhook; its answer, if it gave one, to post as the bot's reply."""
    bot_row = Bot.objects.select_related("user").filter(user_id=bot_user_id).first()
    if bot_row is None or not bot_row.user.is_bot or not bot_row.user.is_active:
        logger.info("bot has no webhook", extra={"bot_user_id": bot_user_id})
        return None
    bot = bot_row.user
    message = (
        Message.objects.select_related("room", "author", "recipient").filter(pk=message_id, retracted_at=None).first()
    )
    if message is None:  # deleted meanwhile
        return None
    room = message.room
    # Nothing of a conversation the bot may not read leaves for its webhook (a private room it is not a member of).
    if not selectors.room_readable(room=room, user=bot):
        logger.info("bot %s cannot read the conversation it was named in", bot.username, extra={"bot": bot.username})
        return None
    if room.is_direct:
        room.peer = message.author  # as the bot sees it: the conversation with the message's author
    payload = bot_payload(message=message, room=room, bot=bot)
    try:
        answer = webhook_deliver(url=bot_row.webhook_url, secret=bot_row.webhook_secret, payload=payload)
    except WebhookRefused as error:
        logger.warning("bot %s: webhook refused: %s", bot.username, error, extra={"bot": bot.username})
        return None
    except WebhookFailed as error:
        logger.warning("bot %s: webhook failed: %s", bot.username, error, extra={"bot": bot.username})
        return None
    if answer.reply is None:
        return None
    # The answer is posted as written: a leading slash is not a command (two slashes post one).
    text = "/" + answer.reply if answer.reply.startswith("/") else answer.reply
    return BotAnswer(bot=bot, room=room, thread=message.parent_id, text=text)
