"""Group memberships renewed many at once: the private parts of channels-redis it takes, checked against the real
package and a real Redis."""

from __future__ import annotations

import asyncio
import re
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from chat.layer_groups import group_renewal_seconds, groups_add
from tests.support.servers import redis_url_or_skip

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements" / "base.txt"


def pinned(package: str) -> str:
    return re.search(rf"^{re.escape(package)}==(\S+)$", REQUIREMENTS.read_text(), re.MULTILINE).group(1)


def test_the_installed_channels_redis_is_the_version_its_private_parts_were_checked_against():
    assert version("channels-redis") == pinned("channels-redis") == "4.3.0"


async def test_groups_added_at_once_hear_what_is_sent_to_them_expire_as_group_add_sets_them_and_say_which_were_new():
    layer = RedisChannelLayer(hosts=[redis_url_or_skip()], prefix=f"test-{uuid.uuid4().hex[:8]}")
    channel = await layer.new_channel(prefix="hub")
    groups = [f"chat_{number}" for number in range(50)]

    assert await groups_add(layer, groups, channel) == 50  # none was there
    assert await groups_add(layer, groups[:10], channel) == 0  # renewed

    await layer.group_send("chat_49", {"type": "chat.message", "text": "to the last group"})
    assert (await asyncio.wait_for(layer.receive(channel), 2))["text"] == "to the last group"
    # The same key, score and expiry as the layer's own group_add gives a group.
    await layer.group_add("chat_own", channel)
    connection = layer.connection(layer.consistent_hash("chat_0"))
    own = layer._group_key("chat_own")
    ours = layer._group_key("chat_0")
    assert await connection.exists(ours) == 1
    assert abs(await connection.zscore(ours, channel) - await connection.zscore(own, channel)) < 5
    assert 0 < await connection.ttl(ours) <= layer.group_expiry
    assert abs(await connection.ttl(ours) - await connection.ttl(own)) <= 1
    await layer.flush()


async def test_a_membership_is_renewed_half_way_to_its_expiry_and_never_on_the_pub_sub_layer():
    assert group_renewal_seconds(RedisChannelLayer(group_expiry=86400)) == 43200
    assert group_renewal_seconds(InMemoryChannelLayer(group_expiry=60)) == 30
    assert group_renewal_seconds(object()) is None


@pytest.mark.parametrize("layer", [InMemoryChannelLayer()], ids=["memory"])
async def test_the_in_memory_layer_adds_groups_one_by_one(layer):
    channel = await layer.new_channel(prefix="hub")
    await groups_add(layer, ["a", "b"], channel)
    await layer.group_send("b", {"type": "chat.message"})
    assert (await asyncio.wait_for(layer.receive(channel), 1))["type"] == "chat.message"
