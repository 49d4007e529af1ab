"""Faults and hostile sockets against real daphne processes, a real redis-server and a shared database.

Each test starts the servers it needs (the product's start command, `tests.support.servers.daphne_command`),
talks to them as browsers do (`tests.system.clients`) and asserts what the users see. None asserts how fast.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from loadtest.client import Browser as HttpBrowser
from loadtest.client import loopback_target
from tests.support.html import visible_text
from tests.support.partition import PartitionProxy
from tests.support.servers import WEBSOCKET_MAX_FRAME_SIZE, WEBSOCKET_MAX_MESSAGE_SIZE, DaphneServer, RedisServer
from tests.system.clients import (
    PATIENCE,
    Browser,
    RawSocket,
    database_rows,
    database_write,
    error_line,
    frame_json,
    input_value,
    new_session,
    server_env,
    server_log,
)

pytestmark = pytest.mark.system


def has_error(text: str):
    return lambda frame: 'id="chat-error"' in frame and text in error_line(frame)


def has_message(text: str):
    return lambda frame: "message-body" in frame and text in visible_text(frame)


def departed(user_id: int):
    """The frame that takes a user off an open online list (an arrival also drops a stale entry first)."""
    return lambda frame: f'<li id="online-user-{user_id}" hx-swap-oob="delete">' in frame and "beforeend" not in frame


def stored(env: dict[str, str], body: str) -> int:
    return database_rows(env, "SELECT count(*) FROM chat_message WHERE body = ?", body)[0][0]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as session:
        yield session


# --- Hostile sockets against the real server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def laptop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    """One daphne as `make run` starts it (in-memory layer), with DEBUG off."""
    base = tmp_path_factory.mktemp("laptop")
    with DaphneServer(env=server_env(base), log_path=base / "daphne.log") as server:
        yield server


async def test_a_socket_from_another_site_is_refused_by_the_real_server(laptop_server, session):
    alice = await Browser.sign_up(session, laptop_server, "mallory-target")
    for origin in ("http://evil.example", None):
        headers = {"Cookie": alice.account.cookie_header()}
        if origin:
            headers["Origin"] = origin
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(laptop_server.url.replace("http", "ws") + "/ws/chat/lobby/", headers=headers)
        assert refused.value.status == 403
    assert "mallory-target" not in await online_names(alice, "lobby")


def server_env_of(server: DaphneServer) -> dict[str, str]:
    return {"DATABASE_URL": server.env["DATABASE_URL"]}


async def online_names(browser: Browser, room: str) -> list[str]:
    """Who the room page shows online, as someone opening it reads it (a page load itself counts nobody)."""
    status, page = await browser.get(f"/chat/{room}/")
    assert status == 200
    online = page.split('id="online-users"', 1)[1].split(">", 1)[1].split("</ul>", 1)[0]
    return visible_text(online).split()


async def eventually_offline(browser: Browser, room: str, username: str, timeout: float = PATIENCE) -> None:
    async with asyncio.timeout(timeout):
        while username in await online_names(browser, room):
            await asyncio.sleep(0.1)


async def test_a_frame_over_64_kib_closes_only_that_socket_cleanly_and_the_server_stays_up(laptop_server, session):
    alice = await Browser.sign_up(session, laptop_server, "alice-big")
    bob = await Browser.sign_up(session, laptop_server, "bob-big")
    bob_tab = await bob.open("frames")
    await bob_tab.until(lambda f: 'id="messages"' in f, "the log")
    tab = await alice.open("frames")
    await tab.until(lambda f: 'id="messages"' in f, "the log")

    # Just under the limit, and made of a character that escapes to six: the length error, the text kept.
    await tab.send_raw(frame_json("'" * (WEBSOCKET_MAX_FRAME_SIZE - 100)))
    refusal = await tab.until(has_error("Messages can be at most 2,000 characters"), "the length error")
    assert input_value(refusal, "message") == "'" * (WEBSOCKET_MAX_FRAME_SIZE - 100)
    # Over it: daphne drops that connection before the application sees the frame; the browser sees 1006 (and
    # the ws extension reconnects), the consumer still runs its disconnect and uncounts the connection.
    await tab.send_raw(frame_json("y" * WEBSOCKET_MAX_FRAME_SIZE))
    assert await tab.closed() == 1006
    await eventually_offline(bob, "frames", "alice-big")  # the dropped socket is uncounted

    fresh = await alice.open("frames")
    await fresh.until(lambda f: 'id="messages"' in f, "the log on a fresh socket")
    await fresh.send("a fresh socket works")
    await bob_tab.until(has_message("a fresh socket works"), "alice's message on bob's untouched tab")
    assert laptop_server.process.poll() is None
    assert "Traceback" not in server_log(laptop_server)
    await fresh.close()
    await bob_tab.close()


async def test_a_message_in_fragments_is_bounded_both_ways_and_the_server_stays_up(laptop_server, session):
    """No browser fragments a message; a script can, to go past the 64 KiB frame limit."""
    alice = await Browser.sign_up(session, laptop_server, "alice-frag")
    raw = await RawSocket.open(alice, "fragments")
    await raw.until(lambda f: 'id="messages"' in f, "the log")

    # 400,000 quotes: read (under the 2 MiB message limit), refused as too long; its text, escaped six times
    # over, would not fit the answer, so only the first 64 Ki characters come back in the box.
    await raw.send_fragments(frame_json("'" * 400_000).encode(), fragment_size=60_000)
    refusal = await raw.until(has_error("Messages can be at most 2,000 characters"), "the length error")
    assert input_value(refusal, "message") == "'" * 65536
    # Past the message limit: daphne drops the connection before the application sees anything.
    await raw.send_fragments(frame_json("z" * (WEBSOCKET_MAX_MESSAGE_SIZE + 1)).encode(), fragment_size=60_000)
    assert await raw.receive() is None
    assert raw.close_code == 1006
    raw.close()

    tab = await alice.open("fragments")
    await tab.until(lambda f: 'id="messages"' in f, "the log on a fresh socket")
    await tab.send("fragments changed nothing")
    await tab.until(has_message("fragments changed nothing"), "the message on a fresh socket")
    assert stored(server_env_of(laptop_server), "fragments changed nothing") == 1
    assert "Traceback" not in server_log(laptop_server)
    await tab.close()


async def test_the_largest_log_the_server_can_send_reaches_the_browser(laptop_server, session):
    """50 messages of 2,000 characters that each escape to 6 bytes: over 600 KB in one frame.

    The frame limit applies to what the server sends as well (autobahn refuses to send more), so a limit sized
    for what browsers send would close every socket of such a room with 1011, over and over.
    """
    bob = await Browser.sign_up(session, laptop_server, "bob-log")
    tab = await bob.open("longest")
    await tab.until(lambda f: 'id="messages"' in f, "the log")
    await tab.close()
    env = server_env_of(laptop_server)
    (room_id,) = database_rows(env, "SELECT id FROM chat_room WHERE name = 'longest'")[0]
    (bob_id,) = database_rows(env, "SELECT id FROM accounts_user WHERE username = 'bob-log'")[0]
    body = '"' * 2000
    database_write(
        env,
        # Written as an operator's import would: no rendered HTML, which the page then shows as escaped text.
        "INSERT INTO chat_message (room_id, author_id, recipient_id, body, body_html, reactions_summary, created_at,"
        " reply_count, last_repliers) VALUES (?, ?, ?, ?, '', '{}', ?, 0, '[]')",
        [(room_id, bob_id, None, body, "2026-01-01 00:00:00")] * 50
        + [(room_id, bob_id, bob_id, body, "2026-01-01 00:00:00")] * 50,
    )

    tab = await bob.open("longest")
    log = await tab.until(lambda f: 'id="messages"' in f, "the log of the longest messages")

    assert len(log.encode()) > 600_000
    assert log.count('class="message-body"') == 50
    await tab.send("still open after the longest log")
    await tab.until(has_message("still open after the longest log"), "bob's own message")
    await tab.close()


async def test_a_client_that_stops_reading_is_closed_with_1013_and_the_room_carries_on(tmp_path, session):
    """Its unsent frames are not kept without end: past the backlog limit the socket closes (the browser retries)."""
    env = server_env(tmp_path, CHAT_SOCKET_BACKLOG_BYTES="65536", CHAT_RATE_LIMIT_MESSAGES="100000")
    with DaphneServer(env=env, log_path=tmp_path / "daphne.log") as server:
        alice = await Browser.sign_up(session, server, "alice-talks")
        stalled_user = await Browser.sign_up(session, server, "bob-stalls")
        stalled = await RawSocket.open(stalled_user, "busy", receive_buffer=4096)
        await stalled.until(lambda f: 'id="messages"' in f, "the log")  # then it reads nothing more
        tab = await alice.open("busy")
        await tab.until(lambda f: 'id="messages"' in f, "the log")
        # Each message's frame is about 12 KB (a quote escapes to six bytes): 8 MB in all, past what the
        # kernel's buffers take on loopback (a send buffer grows to 4 MiB), so the rest waits in the server.
        for i in range(700):
            await tab.send(f"message {i} " + "'" * 1980)
        await tab.until(has_message("message 699"), "alice's last message", timeout=120)

        frames_after = 0
        while await stalled.receive(timeout=30) is not None:  # what was written before the close, then the close
            frames_after += 1
        # 1013 reaches a client that still reads; one that reads nothing sees the drop (1006). Both reconnect.
        assert stalled.close_code in (1013, 1006)
        assert frames_after < 700
        assert "socket closed: cannot keep up" in server_log(server)
        await tab.send("still talking")
        await tab.until(has_message("still talking"), "a message after the close")
        assert server.process.poll() is None
        assert "Traceback" not in server_log(server)
        await tab.close()


# --- A restart, a crash ---------------------------------------------------------------------------------------------


async def test_sigterm_stores_what_is_in_flight_closes_with_1012_and_browsers_reconnect_to_the_next_process(
    tmp_path, session
):
    env = server_env(tmp_path)
    server = DaphneServer(env=env, log_path=tmp_path / "first.log").start()
    try:
        alice = await Browser.sign_up(session, server, "alice-restart")
        bob = await Browser.sign_up(session, server, "bob-restart")
        alice_tab, bob_tab = await alice.open(), await bob.open()
        for tab in (alice_tab, bob_tab):
            await tab.until(lambda f: 'id="messages"' in f, "the log")
        for i in range(5):
            await alice_tab.send(f"in flight {i}")

        # Right after the frames left: some are being stored as the signal arrives.
        server.process.send_signal(signal.SIGTERM)

        assert await alice_tab.closed() == 1012
        assert await bob_tab.closed() == 1012
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    acknowledged = sum(1 for f in alice_tab.frames if 'id="message-form"' in f and 'value=""' in f)
    kept = stored(env, "in flight 0") + sum(stored(env, f"in flight {i}") for i in range(1, 5))
    # Every message the server took is stored and was answered; the rest stay in the browser's box.
    assert kept == acknowledged
    assert "Traceback" not in server_log(server)

    # The browsers reconnect (1012 is one of the ws extension's codes) to the process that replaces it.
    with DaphneServer(env=env, port=server.port, log_path=tmp_path / "second.log") as successor:
        alice_tab = await alice.on(successor).open()
        log = await alice_tab.until(lambda f: 'id="messages"' in f, "the log from the successor")
        for i in range(kept):
            assert f"in flight {i}" in visible_text(log)
        bob_tab = await bob.on(successor).open()
        await bob_tab.until(lambda f: 'id="messages"' in f, "the log from the successor")
        assert sorted(await online_names(bob.on(successor), "lobby")) == ["alice-restart", "bob-restart"]
        await alice_tab.send("after the restart")
        await bob_tab.until(has_message("after the restart"), "a message through the successor")
        await alice_tab.close()
        await bob_tab.close()


@pytest.fixture
def shared_redis() -> Iterator[RedisServer]:
    with RedisServer() as redis:
        yield redis


async def test_a_killed_process_takes_its_users_offline_within_the_timeout_and_the_other_serves_on(
    tmp_path, session, shared_redis
):
    env = server_env(tmp_path, REDIS_URL=shared_redis.url, CHAT_PRESENCE_HEARTBEAT="1", CHAT_PRESENCE_TIMEOUT="3")
    with (
        DaphneServer(env=env, log_path=tmp_path / "doomed.log") as doomed,
        DaphneServer(env=env, log_path=tmp_path / "survivor.log") as survivor,
    ):
        alice = await Browser.sign_up(session, doomed, "alice-killed")
        bob = await Browser.sign_up(session, survivor, "bob-survives")
        carol = await Browser.sign_up(session, survivor, "carol-survives")
        alice_tab = await alice.open()
        await alice_tab.until(lambda f: 'id="messages"' in f, "the log")
        bob_tab, carol_tab = await bob.open(), await carol.open()
        await bob_tab.until(lambda f: "alice-killed" in visible_text(f) and "online-user" in f, "alice online")
        await carol_tab.until(lambda f: 'id="messages"' in f, "the log")

        doomed.stop(signal.SIGKILL)

        (alice_id,) = database_rows(env, "SELECT id FROM accounts_user WHERE username = 'alice-killed'")[0]
        await bob_tab.until(departed(alice_id), "alice leaving bob's online list")
        status, page = await bob.get("/chat/lobby/")
        online = page.split('id="online-users"', 1)[1].split("</ul>", 1)[0]
        assert status == 200
        assert "alice-killed" not in visible_text(online)
        assert "bob-survives" in visible_text(online)
        await bob_tab.send("the survivor serves on")
        await carol_tab.until(has_message("the survivor serves on"), "bob's message on the surviving process")
        assert "Traceback" not in server_log(survivor)
        await bob_tab.close()
        await carol_tab.close()


# --- Redis goes away ------------------------------------------------------------------------------------------------


async def test_a_redis_outage_keeps_pages_and_sockets_up_stores_every_message_and_heals_without_a_restart(
    tmp_path, session
):
    """What "nothing half-stored" means here: a message sent during the outage is stored, and its sender is told it
    was not delivered live; nobody sees it live, everybody sees it in the log once their page catches up."""
    redis = RedisServer().start()
    env = server_env(tmp_path, REDIS_URL=redis.url)
    try:
        with DaphneServer(env=env, log_path=tmp_path / "daphne.log") as server:
            alice = await Browser.sign_up(session, server, "alice-outage")
            bob = await Browser.sign_up(session, server, "bob-outage")
            alice_tab, bob_tab = await alice.open(), await bob.open()
            for tab in (alice_tab, bob_tab):
                await tab.until(lambda f: 'id="messages"' in f, "the log")
            await alice_tab.send("before the outage")
            await bob_tab.until(has_message("before the outage"), "a message before the outage")

            redis.stop()

            for tab in (alice_tab, bob_tab):
                await tab.until(has_error("Live updates are interrupted"), "word of the outage")
            await alice_tab.send("during the outage")
            answer = await alice_tab.until(has_error("Your message is saved"), "the not-delivered-live error")
            assert input_value(answer, "message") == ""
            assert stored(env, "during the outage") == 1
            # The pages work: reading, opening a new room, signing up, logging in.
            for path in ("/chat/lobby/", "/chat/", "/chat/opened-during-the-outage/"):
                status, _page = await bob.get(path)
                assert status == 200, path
            assert "during the outage" in visible_text((await bob.get("/chat/lobby/"))[1])
            carol = await Browser.sign_up(session, server, "carol-outage")
            async with new_session() as elsewhere:
                again = await Browser.sign_up(elsewhere, server, "bob-outage")
                assert again.account.how == "login"
            # A socket opened during the outage shows the log and says live updates are off.
            carol_tab = await carol.open()
            log = await carol_tab.until(lambda f: 'id="messages"' in f, "the log during the outage")
            assert "during the outage" in visible_text(log)
            assert any(has_error("Live updates are interrupted")(frame) for frame in carol_tab.frames)
            assert not any(has_message("during the outage")(frame) for frame in bob_tab.frames)

            redis.start()

            # Every open page catches up by itself: the log again (with what was missed), the error cleared.
            for tab in (alice_tab, bob_tab, carol_tab):
                caught_up = await tab.until(lambda f: 'id="messages"' in f and 'id="chat-error"' in f, "catching up")
                assert "during the outage" in visible_text(caught_up)
                assert error_line(caught_up) == ""
            await alice_tab.send("after the outage")
            for tab in (bob_tab, carol_tab):
                await tab.until(has_message("after the outage"), "a live message after the outage")
            fresh = await bob.open()
            await fresh.until(lambda f: 'id="messages"' in f, "the log on a new socket")
            for tab in (alice_tab, bob_tab, carol_tab, fresh):
                await tab.close()
            for username in ("alice-outage", "bob-outage", "carol-outage"):  # every socket uncounted
                await eventually_offline(bob, "lobby", username)
            assert server.process.poll() is None
            assert "Traceback" not in server_log(server)
    finally:
        redis.stop()


async def test_a_logout_during_a_redis_outage_still_logs_out_and_says_why_the_sockets_were_not_told(tmp_path, session):
    redis = RedisServer().start()
    env = server_env(tmp_path, REDIS_URL=redis.url)
    try:
        with DaphneServer(env=env, log_path=tmp_path / "daphne.log") as server:
            alice = await Browser.sign_up(session, server, "alice-logout-outage")
            http = HttpBrowser(session, loopback_target(server.url), http_timeout=PATIENCE)
            http.cookies = dict(alice.account.cookies)
            token = await http.form_token("/chat/")

            redis.stop()

            status, _body, location = await asyncio.wait_for(
                http.post("/accounts/logout/", {"csrfmiddlewaretoken": token}), timeout=10
            )
            assert (status, location) == (302, "/accounts/login/")
            status, _body, location = await http.get("/chat/")
            assert status == 302
            assert location.startswith("/accounts/login/")
            log = server_log(server)
            # A security event: never passed over in silence, kept to be published when Redis answers again.
            assert "security event not delivered; kept to publish again" in log
            assert "event_type=session.ended" in log
            assert "Traceback" not in log
    finally:
        redis.stop()


# --- A network partition toward Redis -------------------------------------------------------------------------------


async def test_a_partition_toward_redis_fails_like_an_outage_and_heals_by_itself(tmp_path, session):
    """Packets to Redis go unanswered (nothing refused, nothing closed): no call may hang the process. A message is
    stored and its sender answered within seconds, pages and new sockets are served, and everything catches up once
    the partition heals."""
    redis = RedisServer().start()
    try:
        with PartitionProxy(redis.port) as proxy:
            env = server_env(tmp_path, REDIS_URL=proxy.url)
            with DaphneServer(env=env, log_path=tmp_path / "daphne.log") as server:
                alice = await Browser.sign_up(session, server, "alice-partition")
                bob = await Browser.sign_up(session, server, "bob-partition")
                alice_tab, bob_tab = await alice.open(), await bob.open()
                for tab in (alice_tab, bob_tab):
                    await tab.until(lambda f: 'id="messages"' in f, "the log")
                await alice_tab.send("before the partition")
                await bob_tab.until(has_message("before the partition"), "a message before the partition")
                # Answered once every publish of it is done: the partition starts after them.
                await alice_tab.until(lambda f: 'id="message-form"' in f, "the answer to the first message")

                proxy.partition()

                await alice_tab.send("during the partition")
                answer = await alice_tab.until(has_error("Your message is saved"), "an answer during the partition")
                assert input_value(answer, "message") == ""
                assert stored(env, "during the partition") == 1
                # Served meanwhile: a page, and a socket that opens and gets the log.
                status, page = await asyncio.wait_for(bob.get("/chat/lobby/"), timeout=PATIENCE)
                assert status == 200
                assert "during the partition" in visible_text(page)
                late_tab = await asyncio.wait_for(bob.open(), timeout=PATIENCE)
                log = await late_tab.until(lambda f: 'id="messages"' in f, "the log of a socket opened meanwhile")
                assert "during the partition" in visible_text(log)

                proxy.heal()

                for tab in (alice_tab, bob_tab):
                    caught_up = await tab.until(
                        lambda f: 'id="messages"' in f and "during the partition" in visible_text(f), "catching up"
                    )
                    assert "during the partition" in visible_text(caught_up)
                await alice_tab.send("after the partition")
                for tab in (bob_tab, late_tab):
                    await tab.until(has_message("after the partition"), "a live message after the partition")
                for tab in (alice_tab, bob_tab, late_tab):
                    await tab.close()
                assert server.process.poll() is None
                assert "Traceback" not in server_log(server)
    finally:
        redis.stop()
