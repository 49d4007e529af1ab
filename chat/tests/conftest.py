"""Sockets through the real ASGI application: origin validator, auth middleware, routing, consumer."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import User
from chat import broadcasts, presence, selectors, services
from chat.hub import hubs_stop
from config.asgi import application
from tests.support.servers import redis_url_or_skip

ORIGIN = "http://localhost"


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def open_socket(
    user: User | None, room: str = "lobby", *, origin: str | None = ORIGIN, connect: bool = True
) -> WebsocketCommunicator:
    """A browser tab's socket to a room, logged in as user (None: anonymous)."""
    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        headers.append((b"cookie", (await sync_to_async(session_cookie)(user)).encode()))
    socket = WebsocketCommunicator(application, f"/ws/chat/{room}/", headers=headers)
    if connect:
        connected, _ = await socket.connect(timeout=5)
        assert connected
    return socket


async def receive_until(socket: WebsocketCommunicator, predicate: Callable[[str], bool], timeout: float = 5) -> str:
    """The first frame that matches, skipping others (online lists, forms) that arrive before it."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await socket.receive_from(timeout=timeout)
            if predicate(frame):
                return frame


async def drain(socket: WebsocketCommunicator, quiet: float = 0.3) -> list[str]:
    """Every frame received until the socket has been quiet for a moment."""
    frames = []
    while not await socket.receive_nothing(timeout=quiet):
        frames.append(await socket.receive_from())
    return frames


PRESENCE_ID_RE = re.compile(r'id="([^"]+)"')


def is_presence(frame: str) -> bool:
    """A frame that only announces who is online (a room's online list or a directory's count)."""
    ids = PRESENCE_ID_RE.findall(frame)
    return bool(ids) and all(re.fullmatch(r"online-user-\d+|online-\d+", i) for i in ids)


async def hears_only_presence(socket: WebsocketCommunicator, quiet: float = 0.3) -> bool:
    """Whether everything the socket receives until it is quiet is presence (announced every 0.2 s, to anyone)."""
    return all(is_presence(frame) for frame in await drain(socket, quiet=quiet))


def arrived(user: User) -> Callable[[str], bool]:
    """Matches the frame that adds the user to an open online list."""
    return lambda frame: "beforeend:#online-users" in frame and f'id="online-user-{user.pk}"' in frame


def departed(user: User) -> Callable[[str], bool]:
    """Matches the frame that removes the user from an open online list."""
    return lambda frame: f'<li id="online-user-{user.pk}" hx-swap-oob="delete">' in frame


async def joined(user: User, room: str = "lobby") -> WebsocketCommunicator:
    """A socket that has received its log and the online list, which shows the user."""
    socket = await open_socket(user, room)
    frame = await receive_until(socket, lambda f: 'id="messages"' in f)
    assert 'id="online-users"' in frame
    assert f'id="online-user-{user.pk}"' in frame
    return socket


async def online_ids(room: str = "lobby") -> set[int]:
    """Who the presence store counts as online in the room."""
    found = await sync_to_async(selectors.room_get)(name=room)
    return await presence.store().online(room_id=found.pk) if found else set()


def direct_message(author: User, recipient: User, body: str):
    """Store a message of the two people's direct conversation, as `/pm` does (without the flood count)."""
    room = services.rooms.direct_room_get_or_create(user=author, peer=recipient)
    return services.messages.message_create(room=room, author=author, body=body)


def send_message(socket: WebsocketCommunicator, text: str, key: str | None = None):
    """Send a frame exactly as the htmx ws extension does for the message form (with its hidden `key`, if given)."""
    headers = {"HX-Request": "true", "HX-Trigger": "message-form", "HX-Trigger-Name": None, "HX-Target": None}
    fields = {"message": text} if key is None else {"key": key, "message": text}
    return socket.send_to(text_data=json.dumps({**fields, "HEADERS": headers}))


@pytest.fixture(params=["memory", "redis"])
def channel_layer(request: pytest.FixtureRequest, settings) -> str:
    """Run the test once on the in-memory layer and once on a real Redis layer."""
    if request.param == "redis":
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [redis_url_or_skip()], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
            }
        }
    return request.param


@pytest.fixture(autouse=True)
async def fresh_layer_and_hub():
    """Each test runs its own event loop: a fresh layer, hub and presence store, none left running after it, and no
    security event kept from another test's outage."""
    channel_layers.backends.clear()
    presence.store_reset()
    broadcasts.undelivered_take()
    yield
    await hubs_stop()
    # A hub's database call cancelled mid-way still runs on channels' database thread: let it finish before the
    # test's database is flushed (one call queued behind it).
    await sync_to_async(lambda: None)()  # the same single thread, without touching a connection
    channel_layers.backends.clear()
    presence.store_reset()
