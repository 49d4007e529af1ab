"""A bot end to end: a real daphne, a real `manage.py db_worker`, a real redis-server carrying the worker's events to
daphne, and a small HTTP server on this machine acting as the bot's webhook (it answers "pong: <text>").

Someone mentions the bot in a room over the room's socket; the worker POSTs the message, signed, to the webhook, and
posts the answer as the bot's message: it reaches the room's open socket live. Every wait has a deadline; nothing
asserts how fast.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import aiohttp
import pytest

from chat.webhooks import webhook_signature_valid
from tests.support.http import Received, Server, answer_text, http_servers
from tests.support.servers import BASE_DIR, DaphneServer, RedisServer, free_port
from tests.system.clients import Browser, database_write, new_session, server_env

pytestmark = pytest.mark.system

SECRET = "the-bots-own-secret-for-system-tests"


def signed(request: Received) -> bool:
    return webhook_signature_valid(
        secret=SECRET,
        timestamp=request.headers.get("X-Chat-Timestamp", ""),
        body=request.body,
        signature=request.headers.get("X-Chat-Signature", ""),
    )


def bot_answer(handler: BaseHTTPRequestHandler) -> None:
    """The bot's webhook: "pong: <text>" to a request whose signature holds, 401 to any other."""
    request = handler.received
    if signed(request):
        answer_text(f"pong: {request.json()['message']['text']}")(handler)
    else:
        answer_text("", status=401)(handler)


@pytest.fixture(scope="module")
def bot_server() -> Iterator[Server]:
    with http_servers() as start:
        yield start(bot_answer)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    """The web process and one worker on one database, their events shared through Redis; webhooks may call
    loopback (the bot's server is on this machine)."""
    base = tmp_path_factory.mktemp("bots")
    with RedisServer() as redis:
        env = server_env(base, REDIS_URL=redis.url, ACCOUNT_RATE_LIMITS="off", CHAT_WEBHOOK_ALLOW_PRIVATE="1")
        server = DaphneServer(env=env, port=free_port(), log_path=base / "daphne.log")
        worker_log = base / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--interval", "0.2", "--no-reload"],
            cwd=BASE_DIR,
            env=server.env,
            stdout=open(worker_log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        try:
            server.start()
            yield server
        finally:
            server.stop()
            worker.terminate()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            # A worker that failed a task says so in its log: nothing here should have.
            assert "Traceback" not in Path(worker_log).read_text(errors="replace")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as session:
        yield session


def unique(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**9}"


async def bot_made(session: aiohttp.ClientSession, site: DaphneServer, url: str) -> str:
    """A user marked as a bot with its webhook, as the admin would: its username."""
    bot = await Browser.sign_up(session, site, unique("pinger"))
    name = bot.account.username
    database_write(site.env, "UPDATE accounts_user SET is_bot = 1 WHERE username = ?", [(name,)])
    database_write(
        site.env,
        "INSERT INTO accounts_bot (user_id, webhook_url, webhook_secret, created_at)"
        " SELECT id, ?, ?, CURRENT_TIMESTAMP FROM accounts_user WHERE username = ?",
        [(url, SECRET, name)],
    )
    return name


async def test_a_bot_mentioned_in_a_room_answers_live_in_the_room(site, bot_server, session):
    bot = await bot_made(session, site, bot_server.url)
    alice = await Browser.sign_up(session, site, unique("alice"))
    tab = await alice.open(unique("room"))
    try:
        await tab.send(f"@{bot} ping")
        await tab.until_text(f"@{bot} ping", "alice's own message")
        await tab.until_text(f"pong: @{bot} ping", "the bot's answer")
    finally:
        await tab.close()
    [request] = [request for request in bot_server.received if request.json()["bot"] == bot]
    payload = request.json()
    assert signed(request)
    assert payload["message"]["author"] == alice.account.username
    assert payload["message"]["text"] == f"@{bot} ping"
    assert payload["message"]["room"] == tab.room
