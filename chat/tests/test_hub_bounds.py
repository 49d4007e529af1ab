"""A process's hub keeps what it needs, within bounds: shared renders in a byte budget, nothing per room or user that
only grows, background work whose Redis round trips do not grow with the number of groups, and catching up after an
outage without holding live events back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from asgiref.sync import sync_to_async
from django.utils import timezone
from redis.asyncio.connection import AbstractConnection

from accounts.models import User
from chat import broadcasts, presence, selectors
from chat.events import Event, Fragment, LayerBack, RoomOnlineCounted, TypingNoticed
from chat.groups import DIRECTORY_GROUP
from chat.hub import CachedLog, hub, hubs_stop, online
from chat.hub.online import SharedRenders
from chat.hub.recovery import LAYER_RETRY_SECONDS
from chat.logs import LogItem
from chat.models import Room
from chat.tests.conftest import joined
from chat.transport import Frame
from tests.support.servers import RedisServer


class Page:
    """A socket as the hub sees it (chat.hub.subscriptions.Socket), recording what it is given."""

    session_ended = False
    grant = None

    def __init__(self, user_id: int = 1, *, listed: set[int] | None = None, catch_up_seconds: float = 0.0) -> None:
        self.user = User(pk=user_id, username=f"user{user_id}")
        self.listed = listed or set()
        self.catch_up_seconds = catch_up_seconds
        self.held: list[Event] | None = None
        self.frames: list[str] = []
        self.events: list[Event] = []
        self.asked = 0
        self.caught_up = False

    def frame_for(self, event: Fragment) -> Frame | None:
        self.asked += 1
        if self.held is not None:
            self.held.append(event)
            return None
        return event.frame()

    def sidebar_frames(self, event: Event) -> list[Frame]:
        return []

    async def deliver(self, frame: Frame) -> None:
        self.frames.append(frame.text)

    async def hub_event(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, LayerBack):  # as HubConsumer.send_snapshot: live events held while it is made
            self.held = []
            await asyncio.sleep(self.catch_up_seconds)
            held, self.held = self.held, None
            self.caught_up = True
            for fragment in held:
                await self.deliver(fragment.frame())

    async def revoke(self, code: int) -> None:
        self.session_ended = True


def lobby(room_id: int = 1) -> Room:
    return Room(pk=room_id, name=f"room{room_id}", kind=Room.Kind.PUBLIC)


def test_shared_renders_stay_within_their_byte_budget_and_evict_the_least_recently_used():
    renders = SharedRenders(budget=1_000)
    renders.put("a", "A", 400)
    renders.put("b", "B", 400)
    assert renders.get("a") == "A"  # now the most recently used
    renders.put("c", "C", 400)

    assert renders.get("b") is None
    assert (renders.get("a"), renders.get("c")) == ("A", "C")
    assert renders.bytes == 800
    renders.put("huge", "H", 1_001)  # larger than the whole budget: not kept, nothing evicted for it
    assert renders.get("huge") is None
    assert renders.bytes == 800
    renders.discard("a")
    assert renders.bytes == 400


def test_a_shared_log_keeps_rendered_items_not_model_instances_and_their_html_as_utf8():
    moment = timezone.now()
    item = LogItem(
        pk=5,
        author_id=2,
        is_private=False,
        created_at=moment,
        day=moment.date(),
        span=(2, "x"),
        stamp=(),
        head=b'<article class="message',
        tail='"><p>hello 👍</p></article>'.encode(),
    )
    log = CachedLog(version=1, items=[item])
    assert selectors.unread_divider_id(messages=log.items, last_read_id=4, user=User(pk=3)) == 5
    assert "hello 👍" in item.html(continued=True, now=moment).decode()
    assert log.nbytes() < 1_000


@pytest.mark.django_db(transaction=True)
async def test_a_room_with_one_socket_here_keeps_no_log_and_its_second_socket_shares_one(alice, bob):
    alice_socket = await joined(alice)
    room = await sync_to_async(selectors.room_get)(name="lobby")
    assert hub().renders.get(("log", room.pk)) is None
    assert hub().renders.bytes == 0

    bob_socket = await joined(bob)
    kept = hub().renders.get(("log", room.pk))
    assert isinstance(kept, CachedLog)
    assert all(isinstance(item, LogItem) for item in kept.items)

    await bob_socket.disconnect()
    await alice_socket.disconnect()
    await asyncio.sleep(0.3)  # the tick that announces the departures drops the room's state
    assert hub().renders.bytes == 0
    assert hub().rooms == {}
    assert hub().room_of_group == {}


@pytest.mark.django_db(transaction=True)
async def test_the_log_cache_keeps_nothing_over_its_budget(alice, bob, settings):
    settings.CHAT_LOG_CACHE_BYTES = 100
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    second = await joined(bob)  # a third socket renders its log again: nothing was kept
    assert hub().renders.bytes == 0
    for socket in (alice_socket, bob_socket, second):
        await socket.disconnect()


async def test_usernames_stay_bounded_however_many_users_come_and_go(monkeypatch):
    monkeypatch.setattr(online, "USERNAMES_KEPT", 10)
    for user_id in range(1, 40):
        user = User(pk=user_id, username=f"user{user_id}")
        await hub().presence_join(lobby(), user)
        await hub().presence_leave(lobby(), user)
    assert len(hub().usernames) == 10
    assert set(hub().usernames) == set(range(30, 40))  # the most recent


async def test_joins_leaves_and_outages_leave_nothing_behind_in_the_hub():
    the_hub = hub()
    for round_ in range(5):
        pages = [Page(user_id) for user_id in range(1, 4)]
        for page in pages:
            the_hub.room(lobby(round_))
            await the_hub.join(page, [lobby(round_).group_name, f"user_{page.user.pk}"])
            await the_hub.presence_join(lobby(round_), page.user)
        the_hub.layer_lost(None)
        the_hub.lost_at -= LAYER_RETRY_SECONDS
        await the_hub.recover()
        for page in pages:
            await the_hub.presence_leave(lobby(round_), page.user)
            await the_hub.leave(page, [lobby(round_).group_name, f"user_{page.user.pk}"])
        await the_hub.announce()

    assert len(the_hub.tasks) == 3  # receiving, the presence tick, the heartbeat: not one more per outage
    assert the_hub.catching_up is not None
    assert the_hub.telling is not None
    assert the_hub.rooms == {}
    assert the_hub.room_of_group == {}
    assert dict(the_hub.members) == {}
    assert the_hub.group_added_at == {}
    assert dict(the_hub.connections) == {}
    assert the_hub.present == {}
    assert the_hub.presence_turns == {}
    assert the_hub.renders.bytes == 0


async def test_after_an_outage_live_events_reach_pages_while_the_others_still_catch_up():
    the_hub = hub()
    pages = [Page(user_id, catch_up_seconds=0.1) for user_id in range(1, 31)]
    for page in pages:
        await the_hub.join(page, ["chat_1"])
    the_hub.layer_lost(None)
    the_hub.lost_at -= LAYER_RETRY_SECONDS

    # Thirty snapshots of 0.1 s one after another would take 3 s: recovery does not wait for them.
    await asyncio.wait_for(the_hub.recover(), timeout=1)
    assert the_hub.up
    await broadcasts.send(TypingNoticed(html='<p id="typing">someone</p>', typist_id=99), "chat_1")
    async with asyncio.timeout(5):
        while not any(page.frames for page in pages):
            await asyncio.sleep(0.01)
    assert not all(page.caught_up for page in pages)  # delivered while others still catch up

    # Every page catches up, and the ones that were catching up get the event after their snapshot.
    async with asyncio.timeout(5):
        while not all(page.caught_up for page in pages):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    assert all(page.frames == ['<p id="typing">someone</p>'] for page in pages)


async def test_a_directory_hears_one_online_count_per_room_per_tick_and_only_of_rooms_it_lists():
    the_hub = hub()
    lists_room_1, lists_room_2 = Page(1, listed={1}), Page(2, listed={2})
    for page in (lists_room_1, lists_room_2):
        await the_hub.join(page, [DIRECTORY_GROUP])

    for count in (3, 4, 5):  # from three processes, or three ticks of one, between two ticks here
        event = RoomOnlineCounted(room_id=1, html=f'<span id="online-1">{count}</span>')
        await the_hub.dispatch(DIRECTORY_GROUP, event)
    assert lists_room_1.frames == []
    await the_hub.directory_counts_announce()

    assert lists_room_1.frames == ['<span id="online-1">5</span>']
    assert lists_room_2.frames == []
    assert lists_room_2.asked == 0


# The heartbeat against a Redis of its own (counting what reaches it).


@pytest.fixture
def private_redis(request: pytest.FixtureRequest, settings) -> Iterator[str]:
    """A redis-server of the test's own, holding the channel layer and presence; group memberships expire after
    the test's `group_expiry` mark's seconds (2 by default)."""
    mark = request.node.get_closest_marker("group_expiry")
    with RedisServer() as server:
        settings.REDIS_URL = server.url
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [server.url],
                    "prefix": f"test-{uuid.uuid4().hex[:8]}",
                    "group_expiry": mark.args[0] if mark else 2,
                },
            }
        }
        presence.store_reset()
        yield server.url
        presence.store_reset()


async def hub_of_rooms(rooms: int) -> tuple[object, list[Page]]:
    """This process's hub with a page in each of `rooms` rooms, each page in four groups (as a room page is: the
    room's, its user's, its session's, a sidebar's), and each user counted online in their room."""
    the_hub = hub()
    the_hub.channel = await the_hub.layer.new_channel(prefix="hub")  # no background tasks: nothing else talks
    pages = [Page(user_id) for user_id in range(1, rooms + 1)]
    for page in pages:
        room_id = page.user.pk
        groups = [f"chat_{room_id}", f"user_{room_id}", f"session_{room_id}", f"sidebar_{room_id}"]
        await the_hub.join(page, groups)
        the_hub.connections[(room_id, page.user.pk)] += 1
    return the_hub, pages


class Sends:
    """Counts the writes of Redis commands (one per command or per pipeline): the round trips."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        sent = AbstractConnection.send_packed_command

        async def counted(connection: AbstractConnection, *args: object, **kwargs: object) -> None:
            self.count += 1
            await sent(connection, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)


@pytest.mark.redis
@pytest.mark.group_expiry(60)
async def test_a_heartbeat_makes_as_many_round_trips_for_400_rooms_as_for_4_and_renews_only_the_oldest_group(
    private_redis, monkeypatch
):
    sends = Sends(monkeypatch)
    round_trips = {}
    for rooms in (4, 400):
        presence.store_reset()
        the_hub, _ = await hub_of_rooms(rooms)
        await the_hub.heartbeat()  # connections made
        sent, calls_before = sends.count, redis.Redis.from_url(private_redis).info("commandstats")
        await the_hub.heartbeat()
        round_trips[rooms] = sends.count - sent
        calls = redis.Redis.from_url(private_redis).info("commandstats")
        # Group memberships of 60 s are renewed after 30 s: none was due, only the oldest was added again (which
        # tells whether the layer answers).
        assert calls["cmdstat_zadd"]["calls"] - calls_before["cmdstat_zadd"]["calls"] == 2 * rooms + 1
        assert calls["cmdstat_expire"]["calls"] - calls_before["cmdstat_expire"]["calls"] == 1  # a group's EXPIRE
        await hubs_stop()
    # Presence's refresh and sweep, one pipeline each; the oldest group's renewal.
    assert round_trips[4] == round_trips[400] <= 3


@pytest.mark.redis
async def test_a_group_whose_membership_would_expire_is_added_again_and_keeps_hearing_its_events(
    private_redis, settings
):
    settings.CHAT_PRESENCE_HEARTBEAT = 0.25
    the_hub = hub()
    page = Page(1)
    await the_hub.join(page, ["chat_1"])  # starts the hub's tasks
    added = the_hub.group_added_at["chat_1"]

    await asyncio.sleep(3.2)  # past the membership's 2 s

    assert the_hub.group_added_at["chat_1"] > added
    await broadcasts.send(TypingNoticed(html='<p id="typing">still here</p>', typist_id=99), "chat_1")
    async with asyncio.timeout(3):
        while not page.frames:
            await asyncio.sleep(0.02)
    assert page.frames == ['<p id="typing">still here</p>']
    assert time.time() - added > 2


async def test_a_heartbeat_notices_a_layer_that_stopped_answering(monkeypatch):
    """A partition drops packets: nothing fails fast, and with no group due the heartbeat still asks the layer."""
    monkeypatch.setattr(broadcasts, "LAYER_TIMEOUT_SECONDS", 0.2)
    the_hub = hub()
    await the_hub.join(Page(1), ["chat_1"])

    async def unanswered(*args: object) -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(the_hub.layer, "group_add", unanswered)
    await the_hub.heartbeat()

    assert not the_hub.up


@pytest.mark.redis
@pytest.mark.group_expiry(60)
async def test_a_heartbeat_notices_memberships_the_layer_lost_and_recovers_them(private_redis):
    """Redis restarted, or was emptied, without the hub's connection failing: its memberships must not stay lost for
    the 12 hours until they are due."""
    the_hub = hub()
    await the_hub.join(Page(1), ["chat_1"])
    layer = the_hub.layer
    await layer.connection(0).delete(layer._group_key("chat_1"))

    await the_hub.heartbeat()
    assert not the_hub.up
    the_hub.lost_at -= LAYER_RETRY_SECONDS
    await the_hub.recover()

    assert the_hub.up
    assert await layer.connection(0).zscore(layer._group_key("chat_1"), the_hub.channel) is not None
