"""The private shapes of channels, daphne, autobahn and Twisted that chat/transport.py reads, at the pinned versions.

daphne's own `Server.run()` sets up a server on a loopback port in this process (only the blocking `reactor.run()` is
left out: the test turns the asyncio loop of daphne's Twisted reactor itself), behind channels' session middleware as
in config/asgi.py, and a raw socket plays the browser. Nothing here skips: a pin that moves, or an upgrade made
without moving it, fails here and names the function of chat/transport.py to check again.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version

import daphne.server  # first: it installs the asyncio reactor that every later Twisted import must find
import pytest
from channels.sessions import CookieMiddleware, SessionMiddleware
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor, tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

from chat.tests.test_requirements import REQUIREMENTS, pins
from chat.transport import Frame, Wire, backlog_bytes, daphne_protocol, send_close_frame, server_send

# The distributions whose internals chat/transport.py reads, each with the one function that reads them.
READERS = {
    "channels": server_send,
    "daphne": daphne_protocol,
    "autobahn": send_close_frame,
    "twisted": backlog_bytes,
}
OP_TEXT, OP_CLOSE = 0x1, 0x8
CLOSE_TRY_AGAIN_LATER = 1013


@pytest.mark.parametrize("name", sorted(READERS))
def test_the_installed_version_is_the_pin_its_reader_was_checked_against(name: str) -> None:
    pin = pins(REQUIREMENTS / "base.txt")[name]
    assert version(name) == pin, (
        f"{name} {version(name)} is installed but requirements/base.txt pins {pin}: install the pinned file, or move "
        f"the pin with `make lock` after checking {READERS[name].__name__}() in chat/transport.py against it"
    )
    assert f"checked against {name} {pin}" in READERS[name].__doc__.lower(), (
        f"{READERS[name].__name__}()'s docstring should name the version it was checked against, {name} {pin}"
    )


# --- A real daphne server -------------------------------------------------------------------------------------------


@dataclass
class Live:
    server: daphne.server.Server
    port: int
    loop: asyncio.AbstractEventLoop
    sends: asyncio.Queue
    finished: asyncio.Event

    def run(self, coroutine, timeout: float = 10.0):
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout))


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """daphne's Server, set up by its own run() on a free loopback port; each socket's send lands in `sends`."""
    assert isinstance(reactor, AsyncioSelectorReactor), "daphne.server installs the asyncio reactor"
    loop = reactor._asyncioEventloop
    sends: asyncio.Queue = asyncio.Queue()
    finished = asyncio.Event()

    async def socket_app(scope: dict, receive, send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        sends.put_nowait(send)
        while (await receive())["type"] != "websocket.disconnect":
            pass
        finished.set()

    server = daphne.server.Server(
        # channels' session middleware wraps send as it does in config/asgi.py (server_send unwraps it).
        application=CookieMiddleware(SessionMiddleware(socket_app)),
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        signal_handlers=False,
        verbosity=0,
    )
    monkeypatch.setattr(reactor, "run", lambda **_kwargs: None)
    server.run()  # listens at once; the loop is turned by Live.run
    # autobahn drops a socket whose peer has not answered a close within 1 s: too short for a busy test machine.
    server.ws_factory.setProtocolOptions(closeHandshakeTimeout=30)
    try:
        ((_host, port),) = server.listening_addresses
        yield Live(server, port, loop, sends, finished)
    finally:
        for reader in reactor.getReaders():
            if isinstance(reader, tcp.Port) and reader.factory is server.http_factory:
                loop.run_until_complete(asyncio.wait_for(reader.stopListening().asFuture(loop), 5))
        for call in reactor.getDelayedCalls():
            if getattr(call.func, "__self__", None) is server:  # its application and timeout checkers
                call.cancel()
        asyncio.set_event_loop(None)  # run() made the reactor's loop this thread's current one


class Browser:
    """A raw WebSocket client on loopback, with a small receive window so that what it leaves unread piles up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.buffer = b""

    @classmethod
    async def connect(cls, live: Live) -> Browser:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await live.loop.sock_connect(sock, ("127.0.0.1", live.port))
        browser = cls(live.loop, sock)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws/chat/lobby/ HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await live.loop.sock_sendall(sock, request.encode())
        while b"\r\n\r\n" not in browser.buffer:
            await browser.fill()
        response, browser.buffer = browser.buffer.split(b"\r\n\r\n", 1)
        assert response.startswith(b"HTTP/1.1 101 "), response
        return browser

    async def fill(self) -> None:
        chunk = await self.loop.sock_recv(self.sock, 65536)
        assert chunk, "the server closed the connection"
        self.buffer += chunk

    async def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self.fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, unfragmented): its opcode and payload."""
        first, second = await self.read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.read(8))
        return first & 0x0F, await self.read(length)

    def close(self) -> None:
        self.sock.close()


def framed_length(payload: int) -> int:
    """Bytes on the wire of one unmasked server frame with that many payload bytes."""
    return payload + (2 if payload < 126 else 4 if payload < 65536 else 10)


def test_daphne_protocol_finds_the_protocol_behind_daphnes_send_and_channels_session_wrapper(live: Live) -> None:
    async def scenario() -> None:
        browser = await Browser.connect(live)
        send = await live.sends.get()

        protocol = daphne_protocol(server_send(send))
        assert isinstance(protocol, WebSocketProtocol), (
            "daphne's send is no longer partial(server.handle_reply, protocol) under channels' session wrapper: "
            "check server_send() and daphne_protocol() in chat/transport.py"
        )
        assert protocol.state == WebSocketProtocol.STATE_OPEN
        assert protocol in live.server.connections  # config/server.py finds the open sockets there
        assert Wire(send).protocol is protocol

        browser.close()
        await live.finished.wait()

    live.run(scenario())


def test_backlog_bytes_reads_the_real_twisted_transport_and_a_stalled_socket_closes_with_1013(live: Live) -> None:
    async def scenario() -> None:
        browser = await Browser.connect(live)
        wire = Wire(await live.sends.get())
        protocol = wire.protocol
        assert protocol is not None, "daphne_protocol() finds no protocol behind daphne's send"
        transport = protocol.transport
        assert isinstance(transport, tcp.Server), f"daphne's WebSocket runs over a {type(transport)}"
        backlog = backlog_bytes(protocol)
        assert type(backlog) is int
        assert backlog == 0

        # Written, not yet flushed: the loop has not turned since, so every byte is still Twisted's.
        assert await wire.write(Frame("hello"))
        assert backlog_bytes(protocol) == framed_length(5)
        assert await browser.frame() == (OP_TEXT, b"hello")
        assert backlog_bytes(protocol) == 0

        # The browser stops reading and the kernel takes little: what it does not take waits in the transport.
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        wire.backlog_limit = 256 * 1024
        frame, frame_bytes = Frame("x" * 60_000), framed_length(60_000)
        for _ in range(3):
            assert await wire.write(frame)
        assert backlog_bytes(protocol) == 3 * frame_bytes
        await asyncio.sleep(0.05)  # the reactor flushes what the kernel takes
        assert transport._tempDataLen == 0
        assert 0 < backlog_bytes(protocol) < 3 * frame_bytes
        assert len(transport.dataBuffer) - transport.offset == backlog_bytes(protocol)

        written = 3
        while await wire.write(frame):  # until a write leaves more than the limit waiting
            written += 1
            assert written < 10, f"the backlog stayed at {backlog_bytes(protocol)} bytes"
        written += 1  # the write that passed the limit went out before the close
        assert backlog_bytes(protocol) > wire.backlog_limit
        assert protocol.state == WebSocketProtocol.STATE_CLOSING
        assert not await wire.write(frame)

        # send_close_frame's 1013 reaches the browser after everything written before it.
        for _ in range(written):
            assert await browser.frame() == (OP_TEXT, b"x" * 60_000)
        opcode, payload = await browser.frame()
        assert opcode == OP_CLOSE
        assert struct.unpack("!H", payload[:2]) == (CLOSE_TRY_AGAIN_LATER,)

        browser.close()
        await live.finished.wait()

    live.run(scenario())
