"""A browser as the system tests need one: log in over HTTP, open room sockets, read what arrives.

Sockets behave like the htmx ws extension's (same Origin and cookies, the same JSON frame for the form); a tab
keeps every frame it received, so a test can wait for the one it expects and then look at what came before.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from loadtest.client import Account, htmx_frame, loopback_target, new_session, sign_in
from tests.support.html import parse, visible_text
from tests.support.servers import DaphneServer, migrate

PASSWORD = "a-long-enough-passphrase"
# How long a test waits for something the user would see; generous, as no test asserts speed.
PATIENCE = 30.0


def server_env(base: Path, **extra: str) -> dict[str, str]:
    """A production-like environment (DEBUG off) on a SQLite file of its own, migrated."""
    env = {
        "DATABASE_URL": f"sqlite:///{base}/db.sqlite3",
        "SECRET_KEY": "system-tests-" + "k" * 50,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": "",
        **extra,
    }
    migrate(env)
    return env


def database_rows(env: dict[str, str], sql: str, *params: object) -> list[tuple]:
    """Read the servers' database (SQLite or PostgreSQL) directly, as an operator would; `?` placeholders."""
    url = env["DATABASE_URL"]
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            return connection.execute(sql.replace("?", "%s"), params).fetchall()
    with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=20) as connection:
        return connection.execute(sql, params).fetchall()


def database_write(env: dict[str, str], sql: str, rows: list[tuple]) -> None:
    """Write to the servers' SQLite database directly (data no user could make fast enough, say)."""
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=20) as connection:
        connection.executemany(sql, rows)


def server_log(server: DaphneServer) -> str:
    return Path(server.log_path).read_text(errors="replace") if server.log_path else ""


class Browser:
    """One person's browser: an HTTP session with their cookies, and their tabs."""

    def __init__(self, session: aiohttp.ClientSession, server: DaphneServer, account: Account) -> None:
        self.session = session
        self.server = server
        self.account = account

    @classmethod
    async def sign_up(cls, session: aiohttp.ClientSession, server: DaphneServer, username: str) -> Browser:
        account = await sign_in(session, loopback_target(server.url), username, PASSWORD, http_timeout=PATIENCE)
        return cls(session, server, account)

    def on(self, server: DaphneServer) -> Browser:
        """The same browser (same cookies) talking to another server process."""
        return Browser(self.session, server, self.account)

    async def get(self, path: str) -> tuple[int, str]:
        headers = {"Cookie": self.account.cookie_header()}
        async with self.session.get(self.server.url + path, headers=headers, allow_redirects=False) as response:
            return response.status, await response.text()

    async def open(self, room: str = "lobby") -> Tab:
        return await Tab.open(self, room)


class Tab:
    """One open room page's socket, with everything it has received."""

    def __init__(self, browser: Browser, room: str, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.browser = browser
        self.room = room
        self.socket = socket
        self.frames: list[str] = []
        self.seen = 0

    @classmethod
    async def open(cls, browser: Browser, room: str) -> Tab:
        target = loopback_target(browser.server.url)
        socket = await browser.session.ws_connect(
            target.room_socket(room),
            origin=target.origin,
            headers={"Cookie": browser.account.cookie_header()},
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
        )
        return cls(browser, room, socket)

    async def send(self, text: str) -> None:
        await self.socket.send_str(htmx_frame(text, loopback_target(self.browser.server.url), self.room))

    async def send_raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.socket.send_bytes(data)
        else:
            await self.socket.send_str(data)

    async def until(self, predicate: Callable[[str], bool], what: str, timeout: float = PATIENCE) -> str:
        """The next frame (after those already looked at) that matches; fails saying what it waited for."""
        deadline = time.monotonic() + timeout
        while True:
            while self.seen < len(self.frames):
                frame = self.frames[self.seen]
                self.seen += 1
                if predicate(frame):
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.browser.account.username}'s tab: no {what} within {timeout:g} s")
            try:
                message = await asyncio.wait_for(self.socket.receive(), remaining)
            except TimeoutError:
                continue
            if message.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(message.data)
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                raise AssertionError(
                    f"{self.browser.account.username}'s tab closed ({self.socket.close_code}) while waiting for {what}"
                )

    async def until_text(self, text: str, what: str | None = None, timeout: float = PATIENCE) -> str:
        return await self.until(lambda f: text in visible_text(f), what or repr(text), timeout)

    async def closed(self, timeout: float = PATIENCE) -> int | None:
        """Read until the server closes the socket; the close code it sent (1006: dropped without one)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.socket.receive()
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.frames.append(message.data)
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return self.socket.close_code

    async def quiet(self, seconds: float) -> list[str]:
        """Every frame that arrives within the next seconds."""
        start = len(self.frames)
        try:
            await self.until(lambda _f: False, "nothing", timeout=seconds)
        except AssertionError as error:
            if "closed" in str(error):
                raise
        return self.frames[start:]

    async def close(self) -> None:
        await self.socket.close()


class RawSocket:
    """A hand-written WebSocket client, for what no browser sends: one message in many fragments."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_code: int | None = None

    @classmethod
    async def open(cls, browser: Browser, room: str, *, receive_buffer: int | None = None) -> RawSocket:
        """The socket, optionally with a small kernel receive buffer (a client that reads slowly or not at all)."""
        target = loopback_target(browser.server.url)
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", browser.server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer or 2**16)
        request = (
            f"GET /ws/chat/{room}/ HTTP/1.1\r\nHost: 127.0.0.1:{browser.server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {target.origin}\r\n"
            f"Cookie: {browser.account.cookie_header()}\r\n\r\n"
        )
        writer.write(request.encode())
        status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        return cls(reader, writer)

    async def send_fragments(self, payload: bytes, fragment_size: int) -> None:
        """One text message, split into continuation frames of fragment_size bytes."""
        pieces = [payload[i : i + fragment_size] for i in range(0, len(payload), fragment_size)]
        for index, piece in enumerate(pieces):
            opcode = 0x1 if index == 0 else 0x0
            fin = 0x80 if index == len(pieces) - 1 else 0
            mask = os.urandom(4)
            header = bytes([fin | opcode])
            if len(piece) < 126:
                header += bytes([0x80 | len(piece)])
            elif len(piece) < 65536:
                header += bytes([0x80 | 126]) + struct.pack("!H", len(piece))
            else:
                header += bytes([0x80 | 127]) + struct.pack("!Q", len(piece))
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(piece))
            self.writer.write(header + mask + masked)
            await self.writer.drain()

    async def receive(self, timeout: float = PATIENCE) -> str | None:
        """The next text message; None once the server closed (close_code set: 1006 when it just dropped)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    first, second = await self.reader.readexactly(2)
                    length = second & 0x7F
                    if length == 126:
                        (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                    elif length == 127:
                        (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                    data = await self.reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.close_code = 1006
                    return None
                if first & 0x0F not in (0x9, 0xA):  # the server's pings (random bytes) and pongs are not messages
                    break
        if first & 0x0F == 0x8:
            self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            return None
        return data.decode()

    async def until(self, predicate: Callable[[str], bool], what: str) -> str:
        while True:
            frame = await self.receive()
            if frame is None:
                raise AssertionError(f"raw socket closed ({self.close_code}) while waiting for {what}")
            if predicate(frame):
                return frame

    def close(self) -> None:
        self.writer.close()


def error_line(frame: str) -> str:
    """The text of the #chat-error element in a frame ('' when it is cleared)."""
    part = frame.split('id="chat-error"', 1)[1]
    return visible_text(part.split(">", 1)[1].split("</div>", 1)[0])


def input_value(html: str, name: str) -> str | None:
    """The value attribute of the named input, as a browser reads it."""
    return next((attrs.get("value") for tag, attrs in parse(html).tags if attrs.get("name") == name), None)


def frame_json(text: str) -> str:
    return json.dumps({"message": text, "HEADERS": {"HX-Request": "true"}})


__all__ = ["Browser", "Tab", "new_session", "server_env"]
