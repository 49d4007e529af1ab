"""The production shape: several daphne processes sharing one Redis and one PostgreSQL database.

Users whose sockets land on different processes must see one chat: each other's messages, the same online
list, private messages, one flood limit; and when a process dies, its users leave the online lists within
CHAT_PRESENCE_TIMEOUT + CHAT_PRESENCE_HEARTBEAT seconds while the other processes keep serving. Each test talks
to real daphne processes as browsers do (`tests.system.clients`); none asserts how fast, except that presence
bound, which the README documents.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from loadtest.client import Browser as HttpBrowser
from loadtest.client import loopback_target, sign_in
from tests.support.html import visible_text
from tests.support.servers import DaphneServer, RedisServer, migrate, postgres_database
from tests.system.clients import PASSWORD, PATIENCE, Browser, error_line, new_session

pytestmark = pytest.mark.system

HEARTBEAT_S = 1
PRESENCE_TIMEOUT_S = 3
# Room for a loaded CI machine on top of the documented bound (a heartbeat can run late).
SCHEDULING_SLACK_S = 5
LAYERS = ["core", "pubsub"]


def has_message(text: str):
    return lambda frame: "message-body" in frame and text in visible_text(frame)


def online_user_id(frame: str, username: str) -> int | None:
    """The user id of `username` in an online-list fragment (the whole list or one arrival), else None."""
    for match in re.finditer(r'<li id="online-user-(\d+)"[^>]*>(.*?)</li>', frame, re.DOTALL):
        if visible_text(match[2]).strip() == username:
            return int(match[1])
    return None


def arrived(username: str):
    return lambda frame: "online-user-" in frame and online_user_id(frame, username) is not None


def departed(user_id: int):
    """A departure fragment for the user (an arrival also deletes a stale entry first, then adds one)."""
    return lambda frame: (
        re.search(rf'id="online-user-{user_id}"\s+hx-swap-oob="delete"', frame) is not None
        and "beforeend:#online-users" not in frame
    )


@pytest.fixture(scope="module", params=LAYERS)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A throwaway redis-server and PostgreSQL database, migrated: the environment every process shares."""
    with RedisServer() as redis, postgres_database() as database_url:
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "REDIS_CHANNEL_LAYER": request.param,
            "SECRET_KEY": "multiprocess-tests-" + "k" * 50,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ACCOUNT_RATE_LIMITS": "off",
            "CHAT_PRESENCE_HEARTBEAT": str(HEARTBEAT_S),
            "CHAT_PRESENCE_TIMEOUT": str(PRESENCE_TIMEOUT_S),
            "LOG_DIR": str(tmp_path_factory.mktemp(f"multiprocess-{request.param}")),
        }
        migrate(env)
        yield env


def start_daphne(env: dict[str, str], name: str) -> DaphneServer:
    return DaphneServer(env=env, log_path=Path(env["LOG_DIR"]) / f"{name}.log").start()


@pytest.fixture(scope="module")
def pair(shared: dict[str, str]) -> Iterator[tuple[DaphneServer, DaphneServer]]:
    """Two daphne processes of one site."""
    first, second = start_daphne(shared, "a"), start_daphne(shared, "b")
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as session:
        yield session


def unique(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**9}"


async def test_users_on_different_processes_see_each_others_messages_presence_and_private_messages(
    pair: tuple[DaphneServer, DaphneServer], session: aiohttp.ClientSession
) -> None:
    server_a, server_b = pair
    room = unique("mp")
    alice = await Browser.sign_up(session, server_a, unique("alice"))
    bob = await Browser.sign_up(session, server_b, unique("bob"))
    carol = await Browser.sign_up(session, server_b, unique("carol"))
    alice_tab = await alice.open(room)
    await alice_tab.until(arrived(alice.account.username), "alice's own online list")

    bob_tab = await bob.open(room)
    first = await bob_tab.until(lambda f: 'id="online-users"' in f, "bob's online list")
    assert online_user_id(first, alice.account.username) is not None, "bob's list lacks alice (on the other process)"
    await alice_tab.until(arrived(bob.account.username), "bob arriving in alice's online list")
    carol_tab = await carol.open(room)
    await carol_tab.until(lambda f: 'id="online-users"' in f, "carol's online list")
    await alice_tab.until(arrived(carol.account.username), "carol arriving in alice's online list")

    await alice_tab.send("hello from process a")
    await bob_tab.until(has_message("hello from process a"), "alice's message on process b")
    await carol_tab.until(has_message("hello from process a"), "alice's message in carol's tab")
    await bob_tab.send("and back from process b")
    await alice_tab.until(has_message("and back from process b"), "bob's message on process a")

    await alice_tab.send(f"/pm {bob.account.username} a secret across processes")
    private = await bob_tab.until(has_message("a secret across processes"), "alice's private message")
    assert "message--private" in private
    await alice_tab.until(has_message("a secret across processes"), "the sender's own copy")
    # Carol is in the same room on the same process as bob; a message of hers after the private one arrives,
    # and nothing before it carried the secret.
    await carol_tab.send("carol was here")
    await carol_tab.until(has_message("carol was here"), "carol's own message")
    assert not any("a secret across processes" in frame for frame in carol_tab.frames)

    for tab in (alice_tab, bob_tab, carol_tab):
        await tab.close()


async def test_flood_limit_holds_across_processes(
    pair: tuple[DaphneServer, DaphneServer], session: aiohttp.ClientSession
) -> None:
    server_a, server_b = pair
    room = unique("flood")
    mallory = await Browser.sign_up(session, server_a, unique("mallory"))
    tabs = [await mallory.open(room), await mallory.on(server_b).open(room)]
    for tab in tabs:
        await tab.until(lambda f: 'id="online-users"' in f, "the online list")

    started = time.monotonic()
    for index in range(10):
        tab = tabs[index % 2]
        await tab.send(f"burst {index}")
        await tab.until(has_message(f"burst {index}"), f"message {index} accepted")
    tab = tabs[10 % 2]
    await tab.send("burst 10")
    refused = await tab.until(lambda f: 'id="chat-error"' in f and error_line(f), "the flood refusal")
    assert time.monotonic() - started < 10, "the burst took longer than the limit's window: the test proves nothing"
    assert "Slow down" in error_line(refused)
    assert not any(has_message("burst 10")(frame) for t in tabs for frame in t.frames)
    for tab in tabs:
        await tab.close()


async def test_killed_process_users_leave_presence_while_the_others_keep_serving(
    shared: dict[str, str], pair: tuple[DaphneServer, DaphneServer], session: aiohttp.ClientSession
) -> None:
    server_a, _ = pair
    doomed = start_daphne(shared, "doomed")
    try:
        room = unique("kill")
        alice = await Browser.sign_up(session, server_a, unique("alice"))
        dave = await Browser.sign_up(session, doomed, unique("dave"))
        alice_tab = await alice.open(room)
        await alice_tab.until(arrived(alice.account.username), "alice's own online list")
        dave_tab = await dave.open(room)
        arrival = await alice_tab.until(arrived(dave.account.username), "dave arriving (on the doomed process)")
        dave_id = online_user_id(arrival, dave.account.username)

        killed_at = time.monotonic()
        doomed.stop(signal.SIGKILL)
        await alice_tab.until(departed(dave_id), "dave leaving after his process died", timeout=60)
        gone_after = time.monotonic() - killed_at
        assert gone_after <= PRESENCE_TIMEOUT_S + HEARTBEAT_S + SCHEDULING_SLACK_S, (
            f"dave stayed online {gone_after:.1f} s after his process died"
        )

        # The surviving process serves on: the same tab posts, and a new tab opens without dave in its list.
        await alice_tab.send("still here")
        await alice_tab.until(has_message("still here"), "a message after the other process died")
        again = await alice.open(room)
        listing = await again.until(lambda f: 'id="online-users"' in f, "a new tab's online list")
        assert online_user_id(listing, dave.account.username) is None
        assert online_user_id(listing, alice.account.username) is not None
        await again.close()
        await alice_tab.close()
        await asyncio.gather(dave_tab.socket.close(), return_exceptions=True)
    finally:
        doomed.stop(signal.SIGKILL)


async def test_a_logout_served_by_one_process_closes_the_sessions_sockets_on_the_other(
    pair: tuple[DaphneServer, DaphneServer], session: aiohttp.ClientSession
) -> None:
    """The socket lives on process A, the logout request is served by process B: the close goes through Redis."""
    server_a, server_b = pair
    room = unique("logout")
    alice = await Browser.sign_up(session, server_a, unique("alice"))
    # The same person logged in a second time (another browser): that session is not logged out.
    phone = Browser(
        session, server_a, await sign_in(session, loopback_target(server_a.url), alice.account.username, PASSWORD)
    )
    bob = await Browser.sign_up(session, server_b, unique("bob"))
    alice_tab, phone_tab = await alice.open(room), await phone.open(room)
    bob_tab = await bob.open(room)
    for tab in (alice_tab, phone_tab, bob_tab):
        await tab.until(lambda f: 'id="online-users"' in f, "the online list")

    on_b = HttpBrowser(session, loopback_target(server_b.url), http_timeout=PATIENCE)
    on_b.cookies = dict(alice.account.cookies)
    token = await on_b.form_token("/chat/")
    status, _body, location = await on_b.post("/accounts/logout/", {"csrfmiddlewaretoken": token})
    assert (status, location) == (302, "/accounts/login/")

    # docs/contract.md, "sessions": within 2 s, with 4001 (which the browser does not retry).
    assert await alice_tab.closed(timeout=2.0) == 4001
    await bob_tab.send("after alice logged out")
    await phone_tab.until(has_message("after alice logged out"), "the message in alice's other session")
    assert not any("after alice logged out" in frame for frame in alice_tab.frames)
    for tab in (phone_tab, bob_tab):
        await tab.close()
