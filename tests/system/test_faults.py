"""Faults and hostile sockets against real daphne processes, a real redis-server and a shared database.

Each test starts the servers it needs (the product's start command, `tests.support.servers.daphne_command`),
talks to them as browsers do (`tests.system.clients`) and asserts what the users see. None asserts how fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support.html import visible_text
from tests.support.servers import WEBSOCKET_MAX_FRAME_SIZE, WEBSOCKET_MAX_MESSAGE_SIZE, DaphneServer
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
    assert database_rows(server_env_of(laptop_server), "SELECT count(*) FROM chat_connection")[0][0] == 0


def server_env_of(server: DaphneServer) -> dict[str, str]:
    return {"DATABASE_URL": server.env["DATABASE_URL"]}


def connections(server: DaphneServer, username: str) -> int:
    sql = "SELECT count(*) FROM chat_connection c JOIN accounts_user u ON u.id = c.user_id WHERE u.username = ?"
    return database_rows(server_env_of(server), sql, username)[0][0]


async def wait_for(condition, what: str, timeout: float = PATIENCE) -> None:
    """Poll something a user would eventually see (a page, a count) until it holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)
    assert condition(), what


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
    await wait_for(lambda: connections(laptop_server, "alice-big") == 0, "alice's dropped socket to be uncounted")

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
        "INSERT INTO chat_message (room_id, author_id, recipient_id, body, created_at) VALUES (?, ?, ?, ?, ?)",
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
