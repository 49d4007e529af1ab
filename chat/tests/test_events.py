"""Events (chat.events): every kind crosses the channel layer as a plain dict and arrives as the same typed value."""

from __future__ import annotations

import dataclasses
import logging
import uuid

import pytest
from channels.layers import get_channel_layer

from chat import events
from chat.events import KINDS, Event, MessageAppended, RoomActivity, from_wire
from tests.support.servers import redis_url_or_skip

# One example value per field type, to build an instance of every kind.
EXAMPLES = {
    "html": '<div id="x">x</div>',
    "news_html": "<i></i>",
    "message_id": 7,
    "room_id": 3,
    "author_id": 2,
    "typist_id": 2,
    "unread": 4,
    "whisper_of": 5,
    "read_only": True,
    "members_only": True,
    "member_ids": [1, 2],
    "mentioned": [2],
    "arrived": [[1, "alice"]],
    "departed": [2],
    "messages": [[7, 2]],
    "room_name": "lobby",
    "created_at": 1_765_000_000.5,
    "reason": "logout",
    "keep_session": "session_abc",
    "thread_id": 9,
    "level": "all",
}


def example(cls: type[Event]) -> Event:
    return cls(**{field.name: EXAMPLES[field.name] for field in dataclasses.fields(cls)})


def fields_of(event: Event) -> dict[str, object]:
    return {field.name: getattr(event, field.name) for field in dataclasses.fields(event)}


@pytest.mark.parametrize("cls", list(KINDS.values()), ids=list(KINDS))
def test_every_kind_arrives_as_the_value_that_was_sent(cls):
    sent = example(cls)
    group, received = from_wire(sent.to_wire("chat_3"))
    assert group == "chat_3"
    assert type(received) is cls
    assert fields_of(received) == fields_of(sent)


async def test_every_kind_crosses_a_real_redis_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url_or_skip()], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
        }
    }
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("events", channel)
    for cls in KINDS.values():
        await layer.group_send("events", example(cls).to_wire("events"))
        group, received = from_wire(await layer.receive(channel))
        # msgpack gives lists for tuples: the same values to everything that reads them.
        assert (group, type(received)) == ("events", cls)
        assert fields_of(received) == fields_of(example(cls))
    await layer.flush()


def test_a_kind_this_process_does_not_know_is_dropped_and_logged(caplog):
    caplog.set_level(logging.WARNING, logger="chat.events")
    assert from_wire({"type": "message.from_the_future", "group": "chat_3", "html": ""}) is None
    assert "unknown event dropped" in caplog.text


def test_a_fragment_is_framed_once_however_many_sockets_it_goes_to():
    event = MessageAppended(html="<div></div>", message_id=1)
    assert event.frame() is event.frame()
    assert event.frame().text == "<div></div>"


def test_room_activity_counts_only_the_messages_a_reader_did_not_write_and_has_not_listed():
    activity = RoomActivity(room_id=3, html="<a></a>", news_html="<b></b>", messages=[(10, 1), (11, 2), (12, 1)])
    assert activity.news_for(2) == 2
    assert activity.news_for(1) == 1
    assert activity.news_for(2, after=10) == 1
    assert activity.frame_with_news(2).text == "<a></a><b></b><b></b>"
    assert activity.frame_with_news(0) is activity.frame()


def test_only_security_decisions_are_required_to_arrive():
    required = {kind for kind, cls in KINDS.items() if cls.required}
    assert required == {events.SessionEnded.kind, events.AccessChanged.kind}
