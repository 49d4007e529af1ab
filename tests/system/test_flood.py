"""Flood control across tabs and server processes: two daphne processes sharing one database and one Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from tests.support.html import visible_text
from tests.support.servers import DaphneServer, RedisServer, postgres_database
from tests.system.clients import Browser, database_rows, error_line, new_session, server_env, server_log

pytestmark = pytest.mark.system

SLOW_DOWN = "Slow down: at most 10 messages in 10 seconds."


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as session:
        yield session


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[DaphneServer, DaphneServer, dict[str, str]]]:
    with RedisServer() as redis:
        env = server_env(tmp_path, REDIS_URL=redis.url)
        with (
            DaphneServer(env=env, log_path=tmp_path / "first.log") as first,
            DaphneServer(env=env, log_path=tmp_path / "second.log") as second,
        ):
            yield first, second, env


def seconds(created_at: str | datetime) -> float:
    """A stored creation time (SQLite: text, PostgreSQL: a datetime) in seconds."""
    return (created_at if isinstance(created_at, datetime) else datetime.fromisoformat(created_at)).timestamp()


def accepted(frame: str) -> bool:
    return 'id="message-form"' in frame and 'value=""' in frame


def refused(frame: str) -> bool:
    return 'id="chat-error"' in frame and error_line(frame).startswith("Slow down: at most")


async def test_the_limit_holds_across_processes_and_refused_messages_reach_nobody(two_processes, session):
    first, second, env = two_processes
    alice = await Browser.sign_up(session, first, "alice-flood")
    bob = await Browser.sign_up(session, second, "bob-watches")
    here, there = await alice.open(), await alice.on(second).open()
    watcher = await bob.open()
    for tab in (here, there, watcher):
        await tab.until(lambda f: 'id="messages"' in f, "the log")

    for i in range(10):
        tab = here if i % 2 else there
        await tab.send(f"burst {i}")
        await tab.until(accepted, f"burst {i} accepted")
    await here.send("eleventh, first process")
    await there.send("twelfth, second process")

    for tab in (here, there):
        refusal = await tab.until(refused, "the refusal")
        assert SLOW_DOWN in error_line(refusal)
    await bob.on(second).get("/chat/lobby/")
    await watcher.send("bob is not slowed down")
    await watcher.until(lambda f: "bob is not slowed down" in visible_text(f), "bob's own message")
    seen = " ".join(visible_text(f) for f in watcher.frames)
    assert [i for i in range(10) if f"burst {i}" in seen] == list(range(10))
    assert "eleventh" not in seen
    assert "twelfth" not in seen
    rows = database_rows(
        env,
        "SELECT count(*) FROM chat_message m JOIN accounts_user u ON u.id = m.author_id "
        "WHERE u.username = 'alice-flood'",
    )
    assert rows == [(10,)]
    for tab in (here, there, watcher):
        await tab.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_simultaneous_floods_from_two_processes_never_store_more_than_the_limit_in_any_window(
    tmp_path, session, database
):
    """Both processes count in the database at once: without a lock, each can count N-1 and store the Nth.

    A short window (3 messages per second here) makes the window's edge pass many times during the flood.
    """
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        database_url = stack.enter_context(postgres_database()) if database == "postgresql" else None
        env = server_env(
            tmp_path,
            REDIS_URL=redis.url,
            CHAT_RATE_LIMIT_MESSAGES="3",
            CHAT_RATE_LIMIT_SECONDS="1",
            **({"DATABASE_URL": database_url} if database_url else {}),
        )
        first = stack.enter_context(DaphneServer(env=env, log_path=tmp_path / "first.log"))
        second = stack.enter_context(DaphneServer(env=env, log_path=tmp_path / "second.log"))
        alice = await Browser.sign_up(session, first, "alice-race")
        tabs = [await alice.open(), await alice.open(), await alice.on(second).open(), await alice.on(second).open()]
        for tab in tabs:
            await tab.until(lambda f: 'id="messages"' in f, "the log")

        for burst in range(12):
            await asyncio.gather(*(tab.send(f"race {burst}.{n}") for n, tab in enumerate(tabs) for _ in range(3)))
            await asyncio.sleep(0.25)
        for tab in tabs:
            for _ in range(36):
                await tab.until(lambda f: accepted(f) or refused(f), "an answer to each message")
            await tab.close()
        rows = database_rows(env, "SELECT created_at FROM chat_message")
        logs = server_log(first) + server_log(second)
    times = sorted(seconds(created_at) for (created_at,) in rows)
    accepted_count = sum(1 for tab in tabs for f in tab.frames if accepted(f))
    assert len(times) == accepted_count
    crowded = [t for t in times if sum(1 for u in times if t - 1 < u <= t) > 3]
    assert crowded == [], f"more than 3 messages within a second, ending at {crowded}"
    assert "Traceback" not in logs
