"""A process's group memberships in the channel layer, renewed many at once.

A membership lasts the layer's `group_expiry` (24 h by default) from when it was added: channels-redis scores each
channel in a group's sorted set with the time it was added and drops those older than that when it sends; the
in-memory layer does the same. A hub renews each of its groups once half of that has passed, not every heartbeat,
and renews many in one round trip per Redis shard (one script) instead of two round trips each (`group_add`: a
ZADD, then an EXPIRE). The layer's own `group_add` has no form for many groups, so this takes private parts of
channels-redis: that access sits in `redis_groups_add` below, whose docstring names the pinned version it was
checked against; chat/tests/test_layer_groups.py runs it against a real Redis and fails when the installed version
differs from requirements/base.txt or changes its shape.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

from channels_redis.core import RedisChannelLayer


def group_renewal_seconds(layer: object) -> float | None:
    """How often a membership must be added again to stay; None when it does not expire (the pub/sub layer)."""
    expiry = getattr(layer, "group_expiry", None)
    return expiry / 2 if expiry else None


async def groups_add(layer: object, groups: Sequence[str], channel: str) -> int:
    """Add the channel to every group: one round trip per shard on the Redis core layer, else one add each. How
    many of these memberships the layer did not have (0 where the layer cannot say)."""
    if isinstance(layer, RedisChannelLayer):
        return await redis_groups_add(layer, groups, channel)
    for group in groups:
        await layer.group_add(group, channel)
    return 0


# KEYS: the groups' keys. ARGV: the channel, its score (now), the keys' expiry in seconds. What group_add does, each.
# Returns how many of the memberships were not there.
_GROUPS_ADD = """
local missing = 0
for i = 1, #KEYS do
  missing = missing + redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
return missing
"""


async def redis_groups_add(layer: RedisChannelLayer, groups: Sequence[str], channel: str) -> int:
    """What `group_add` does for each group, in one script per shard; how many memberships were not there.

    Private to channels-redis, checked against channels-redis 4.3.0: `RedisChannelLayer.group_add` picks the shard
    with `consistent_hash(group)` and its client with `connection(index)`, names the group's key `_group_key(group)`,
    then ZADDs the channel scored with `time.time()` and EXPIREs the key after `group_expiry` seconds.
    """
    by_shard: dict[int, list[bytes]] = defaultdict(list)
    for group in groups:
        by_shard[layer.consistent_hash(group)].append(layer._group_key(group))
    now = time.time()
    missing = 0
    for index, keys in by_shard.items():
        missing += await layer.connection(index).eval(_GROUPS_ADD, len(keys), *keys, channel, now, layer.group_expiry)
    return missing
