"""Write limits: at most N writes of a kind per sliding window, per user (per client address when anonymous).

One mechanism for every kind (README and SECURITY.md, "Limits"): messages over the socket, and every write over HTTP
(reactions, edits, deletions, uploads, room settings and members, leaving a room, creating one by opening a new
name, signup, login, password resets and changes). A window is a sorted set in Redis, one per kind and key,
checked and filled by one atomic script (drop what left the window, count, admit), so the count holds across tabs
and server processes. When Redis is not configured, or while it does not answer:

- messages (`message_admit`) fall back on counting rows in the database (`services.message_rate_check`);
- the HTTP kinds (`admit`) fall back on a sliding window in this process's memory: the same limit, counted per
  process until Redis answers again.

Around a switch either way one window may admit up to twice the limit: the two counts do not see each other.

Over HTTP, chat.http_limits applies these counts to requests and answers a refusal (429, `Retry-After`, a
sentence); a service that writes only on some calls (creating a room by opening its name) calls `admit` itself.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# KEYS: the window. ARGV: now (s), window (s), limit, a member for this write ('' to only look, counting nothing).
# Answers {1, 0} when admitted, else {0, milliseconds until the window has room again}.
_ADMIT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local freeing = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  local at = tonumber(freeing[2] or now)
  return {0, math.ceil((at + window - now) * 1000)}
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
end
return {1, 0}
"""

# While Redis is down, say so at most this often.
WARNING_INTERVAL_SECONDS = 30.0

# What each kind counts, for the sentence: "at most 30 <noun> per minute".
NOUNS = {
    "reactions": "reactions",
    "edits": "edits",
    "deletes": "deleted messages",
    "uploads": "files",
    "room_settings": "changes to a room's settings",
    "room_members": "changes to a room's members",
    "room_leave": "rooms left",
    "rooms": "new rooms",
    "signup": "sign-up attempts",
    "login": "login attempts",
    "login_failed": "failed logins to one account",
    "password_reset": "password reset attempts",
    "password_reset_email": "password reset emails to one address",
    "password_change": "password changes",
    "account": "account changes",
    "notifications": "changes to your email notifications",
    "tokens": "changes to API tokens",
    "api": "writes over the API",
}


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    # Refused: seconds until the window has room again.
    retry_after: float = 0.0
    # Admitted and counted in Redis: the entry, to take the admission back (`forget`).
    member: str | None = None


_clients: dict[str, redis.Redis] = {}


def _client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    return client


def _redis_admit(key: str, *, at: float, limit: int, window: float, count: bool = True) -> Verdict | None:
    """The window in Redis, or None when Redis is not configured or does not answer."""
    client = _client()
    if client is None:
        return None
    member = uuid.uuid4().hex if count else ""
    try:
        admitted, retry_ms = client.eval(_ADMIT, 1, key, at, window, limit, member)
    except redis.RedisError as error:
        _warn_unavailable(error)
        return None
    if admitted:
        return Verdict(True, member=member or None)
    return Verdict(False, retry_after=retry_ms / 1000)


_warned_at = float("-inf")


def _warn_unavailable(error: Exception) -> None:
    global _warned_at
    if time.monotonic() - _warned_at > WARNING_INTERVAL_SECONDS:
        _warned_at = time.monotonic()
        logger.warning("write limits unavailable in Redis; counting elsewhere", extra={"reason": type(error).__name__})


class LocalWindows:
    """The same sliding windows in this process's memory: the fallback of the HTTP kinds."""

    SWEEP_EVERY = 1000

    def __init__(self) -> None:
        self.clock = time.monotonic
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, deque[float]]] = {}
        self._calls = 0

    def admit(self, key: str, *, limit: int, window: float, count: bool = True) -> Verdict:
        now = self.clock()
        with self._lock:
            self._sweep(now)
            _, hits = self._windows.get(key) or (window, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                freeing = hits[len(hits) - limit] if limit > 0 else now
                verdict = Verdict(False, retry_after=freeing + window - now)
            else:
                if count:
                    hits.append(now)
                verdict = Verdict(True)
            if hits:
                self._windows[key] = (window, hits)
            else:
                self._windows.pop(key, None)
            return verdict

    def _sweep(self, now: float) -> None:
        """Now and then, drop the windows nobody wrote into lately, so that memory follows recent writers only."""
        self._calls += 1
        if self._calls % self.SWEEP_EVERY:
            return
        for key, (window, hits) in list(self._windows.items()):
            if not hits or hits[-1] <= now - window:
                del self._windows[key]

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


local_windows = LocalWindows()


# --- Any kind -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: float


def limit_of(kind: str) -> Limit | None:
    """The kind's limit (settings.CHAT_WRITE_LIMITS), or None when it is off."""
    if kind not in NOUNS:
        raise KeyError(f"no write limit named {kind!r}: add it to chat.flood.NOUNS and CHAT_WRITE_LIMITS")
    configured = settings.CHAT_WRITE_LIMITS.get(kind)
    return None if configured is None else Limit(*configured)


def kind_key(kind: str, key: str) -> str:
    return f"chat:limit:{kind}:{key}"


def admit(kind: str, key: str, *, count: bool = True) -> Verdict:
    """Whether one more write of this kind is allowed now under `key` (counted, unless `count` is false)."""
    limit = limit_of(kind)
    if limit is None:
        return Verdict(True)
    window_key = kind_key(kind, key)
    verdict = _redis_admit(window_key, at=time.time(), limit=limit.count, window=limit.seconds, count=count)
    if verdict is None:
        verdict = local_windows.admit(window_key, limit=limit.count, window=limit.seconds, count=count)
    return verdict


def sentence(kind: str, retry_after: float) -> str:
    """ "Slow down: at most 30 reactions per minute. Try again in 12 seconds." """
    limit = limit_of(kind) or Limit(0, 0)
    return (
        f"Slow down: at most {limit.count} {NOUNS[kind]} per {_window(limit.seconds)}. "
        f"Try again in {_wait(retry_seconds(retry_after))}."
    )


def retry_seconds(retry_after: float) -> int:
    return max(1, math.ceil(retry_after))


def _window(seconds: float) -> str:
    """60 -> "minute", 300 -> "5 minutes", 10 -> "10 seconds"."""
    if seconds >= 60 and seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds / 60:g} minutes"
    return "second" if seconds == 1 else f"{seconds:g} seconds"


def _wait(seconds: int) -> str:
    """12 -> "12 seconds", 1 -> "1 second", 240 -> "4 minutes" (rounded up past a minute and a half)."""
    if seconds > 90:
        return f"{math.ceil(seconds / 60)} minutes"
    return "1 second" if seconds == 1 else f"{seconds} seconds"


# --- Messages over the socket ---------------------------------------------------------------------------------------


def window_key(user_id: int) -> str:
    return f"chat:flood:{user_id}"


def message_admit(*, user_id: int, at: float) -> tuple[bool, str | None]:
    """Whether the user may post one more message now, and the admitted message's member (to take it back).

    (True, None) means Redis could not say (not configured, or down): the caller counts in the database instead.
    """
    verdict = _redis_admit(
        window_key(user_id), at=at, limit=settings.CHAT_RATE_LIMIT_MESSAGES, window=settings.CHAT_RATE_LIMIT_SECONDS
    )
    if verdict is None:
        return True, None
    return verdict.admitted, verdict.member


def message_forget(*, user_id: int, member: str) -> None:
    """Take back an admission whose message was not stored."""
    client = _client()
    if client is None:
        return
    try:
        client.zrem(window_key(user_id), member)
    except redis.RedisError:  # it leaves the window by itself
        logger.warning("flood admission not taken back", exc_info=True)
