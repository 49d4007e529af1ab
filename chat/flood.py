"""Flood control in Redis: at most N accepted messages per user per sliding window, across tabs and processes.

One atomic script per message (drop what left the window, count, admit) instead of a row lock and a COUNT in the
database transaction that stores it. Used when `REDIS_URL` is set; without Redis (the embedded default), or while
Redis does not answer, `services.message_rate_check` counts in the database as before, so the limit holds through
an outage. Around the switch either way, one window may admit up to twice the limit: the two counts do not see
each other's messages.
"""

from __future__ import annotations

import logging
import uuid

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# KEYS: the user's window. ARGV: now (s), window (s), limit, a member for this message.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return 1
"""

_clients: dict[str, redis.Redis] = {}


def _client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    return client


def window_key(user_id: int) -> str:
    return f"chat:flood:{user_id}"


def message_admit(*, user_id: int, at: float) -> tuple[bool, str | None]:
    """Whether the user may post one more message now, and the admitted message's member (to take it back).

    (True, None) means Redis could not say (not configured, or down): the caller counts in the database instead.
    """
    client = _client()
    if client is None:
        return True, None
    member = uuid.uuid4().hex
    try:
        admitted = client.eval(
            _ADMIT,
            1,
            window_key(user_id),
            at,
            settings.CHAT_RATE_LIMIT_SECONDS,
            settings.CHAT_RATE_LIMIT_MESSAGES,
            member,
        )
    except redis.RedisError as error:
        logger.warning("flood count unavailable; counting in the database", extra={"reason": type(error).__name__})
        return True, None
    return bool(admitted), member if admitted else None


def message_forget(*, user_id: int, member: str) -> None:
    """Take back an admission whose message was not stored."""
    client = _client()
    if client is None:
        return
    try:
        client.zrem(window_key(user_id), member)
    except redis.RedisError:  # it leaves the window by itself
        logger.warning("flood admission not taken back", exc_info=True)
