"""The cache: Redis, shared by every server process; this process's memory while Redis does not answer."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# While Redis is down, say so at most this often.
WARNING_INTERVAL_SECONDS = 30.0


class FailSoftRedisCache(RedisCache):
    """Django's RedisCache, falling back to this process's memory while Redis is unreachable.

    allauth keeps its login and signup rate limits in the cache, and Django's RedisCache raises when Redis is
    down: the login and signup pages would answer 500 for the whole outage. Here the limits keep counting, per
    process, until Redis answers again (SECURITY.md, "Outages").
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self.fallback = LocMemCache(f"fallback-{server}", {"TIMEOUT": params.get("TIMEOUT", 300)})
        self.warned_at = float("-inf")

    def either(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(super(), method)(*args, **kwargs)
        except RedisError as error:
            if time.monotonic() - self.warned_at > WARNING_INTERVAL_SECONDS:
                self.warned_at = time.monotonic()
                logger.warning("cache unreachable, using this process's memory", extra={"reason": repr(error)})
            return getattr(self.fallback, method)(*args, **kwargs)

    def add(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("add", *args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("get", *args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("set", *args, **kwargs)

    def touch(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("touch", *args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("delete", *args, **kwargs)

    def get_many(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("get_many", *args, **kwargs)

    def has_key(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("has_key", *args, **kwargs)

    def incr(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("incr", *args, **kwargs)

    def set_many(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("set_many", *args, **kwargs)

    def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("delete_many", *args, **kwargs)

    def clear(self, *args: Any, **kwargs: Any) -> Any:
        return self.either("clear", *args, **kwargs)
