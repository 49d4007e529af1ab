"""How a frame reaches a browser: framed once per event, written straight to daphne's protocol.

Through ASGI, every recipient of a room message costs a message dict, channels' session wrapper, daphne's
`handle_reply` coroutine, a UTF-8 encoding and autobahn's framing of the same bytes. Under daphne the hub frames
the payload once (autobahn's PreparedMessage, made for broadcasting) and writes those bytes to each socket. Any
other server (the tests' communicator, uvicorn) gets the same text through ASGI's `send`.

A socket whose unsent bytes pass `CHAT_SOCKET_BACKLOG_BYTES` (4 MiB) cannot keep up (a stalled or very slow client);
it is closed with 1013, "try again later" (a client that reads nothing sees the connection dropped, 1006), and the
htmx ws extension answers either by reconnecting.

Reaching daphne's protocol and its socket's backlog takes private attributes of channels, daphne, autobahn and
Twisted. Each such access sits in one function below (`server_send`, `daphne_protocol`, `backlog_bytes`,
`send_close_frame`) whose docstring names the pinned version it was checked against; chat/tests/test_transport.py
runs them against a real daphne server and fails when an installed version differs from requirements/base.txt or
changes their shape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from autobahn.exception import Disconnected
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings

CLOSE_TRY_AGAIN_LATER = 1013
# daphne's --websocket-max-message-size: larger frames take the ASGI path, which refuses them as it always did.
PREPARED_MAX_BYTES = 2 * 1024 * 1024

Send = Callable[[dict], Awaitable[None]]

logger = logging.getLogger(__name__)


class Frame:
    """One event's text, encoded and framed at most once for all the sockets it goes to."""

    __slots__ = ("_prepared", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._prepared: Any = None

    def prepared(self, protocol: WebSocketProtocol) -> Any:
        if self._prepared is None:
            self._prepared = protocol.factory.prepareMessage(self.text.encode())
        return self._prepared


def server_send(send: Send) -> Send:
    """The server's own send under channels' session wrapper, which only acts on HTTP responses.

    Private to channels, checked against channels 4.3.2: `SessionMiddleware` hands the consumer the bound method
    `InstanceSessionWrapper.send`, whose instance keeps the server's send as `real_send`. Any other send is returned
    as it is.
    """
    owner = getattr(send, "__self__", None)
    return getattr(owner, "real_send", send)


def daphne_protocol(send: Send) -> WebSocketProtocol | None:
    """The socket's protocol when daphne serves it, else None.

    Private to daphne, checked against daphne 4.2.3: `Server.create_application` hands the application
    `partial(server.handle_reply, protocol)`, so the protocol is the partial's first argument.
    """
    if isinstance(send, partial) and send.args and isinstance(send.args[0], WebSocketProtocol):
        return send.args[0]
    return None


def backlog_bytes(protocol: WebSocketProtocol) -> int:
    """Bytes written to the socket that the kernel has not taken yet.

    Private to Twisted, checked against Twisted 26.10.0: the TCP transport (`abstract.FileDescriptor`) holds
    `dataBuffer`, sent up to `offset`, plus `_tempDataLen` bytes written since its last `doWrite`.
    """
    transport = protocol.transport
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def send_close_frame(protocol: WebSocketProtocol, code: int) -> None:
    """Start the closing handshake with a close code the application may not send itself (1012, 1013).

    Below autobahn's interface, checked against autobahn 26.11.1: its `sendClose` takes only 1000 and 3000-4999
    and then calls `sendCloseFrame`, which takes any code.
    """
    protocol.sendCloseFrame(code=code, isReply=False)


class Wire:
    """One socket's way out."""

    __slots__ = ("backlog_limit", "protocol", "send")

    def __init__(self, send: Send) -> None:
        self.send = server_send(send)
        self.protocol = daphne_protocol(self.send)
        self.backlog_limit = settings.CHAT_SOCKET_BACKLOG_BYTES

    async def write(self, frame: Frame) -> bool:
        """Write the frame; False when the socket is gone or was closed for falling behind."""
        protocol = self.protocol
        if protocol is None or len(frame.text) > PREPARED_MAX_BYTES // 4:
            await self.send({"type": "websocket.send", "text": frame.text})
            return True
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            return False
        try:
            protocol.sendPreparedMessage(frame.prepared(protocol))
        except Disconnected:
            return False
        backlog = backlog_bytes(protocol)
        if backlog > self.backlog_limit:
            # The close frame waits behind the backlog: a client that reads nothing at all sees the connection
            # dropped (1006) when autobahn's closing handshake times out. The browser reconnects after either.
            logger.warning("socket closed: cannot keep up", extra={"backlog_bytes": backlog, "close_code": 1013})
            send_close_frame(protocol, CLOSE_TRY_AGAIN_LATER)
            return False
        return True
