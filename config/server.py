"""daphne's Server, as the Procfile runs it (config/asgi.py swaps it in under daphne's command line):

- stopping gracefully: on SIGTERM the sockets close with 1012 (Service Restart), not a drop;
- refusing an oversize request body with 413 before reading it (BodyLimitedRequest).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import signal
from types import FrameType

from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server, reactor
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings
from twisted.internet.error import ReactorNotRunning

from chat.attachments import too_large_sentence
from chat.transport import send_close_frame

logger = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012
# Seconds a stopping server gives its sockets to finish the frame in hand and close (SECURITY.md, "Restarts").
SHUTDOWN_GRACE_SECONDS = 10.0
# Of those, the most it waits for frames in hand before closing every socket with 1012 all the same: a message
# stored but not answered by then is sent again by its page, under its form's key, and is not stored twice.
FRAMES_IN_HAND_SECONDS = 4.0
# Seconds a refused upload's connection stays open after the 413, reading and dropping what the client still sends,
# so that the client reads the answer instead of a reset (RFC 9112, 9.6, "Tear-down"; nginx's lingering close).
REFUSED_BODY_LINGER_SECONDS = 5.0


class BodyLimitedRequest(WebRequest):
    """daphne's HTTP request, answering 413 to a body over settings.REQUEST_BODY_MAX_BYTES before reading it.

    Twisted's HTTP takes a request's whole body (in memory, or a temporary file past 100 KB) before daphne hands the
    request to the application, so no view or middleware can refuse an oversize upload in time: a POST declaring
    1 GiB and sending 1 KiB got no answer at all, and one that sent it all filled the disk first. Here the declared
    Content-Length is checked as soon as the headers are in (Twisted calls gotLength before any body byte), and a
    chunked body is counted as it arrives. The answer carries the upload form's sentence as an out-of-band
    #chat-error (htmx shows it; a plain browser shows it as the page); the application never sees the request.
    """

    body_refused = False
    body_received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > settings.REQUEST_BODY_MAX_BYTES:
            self.body_refuse(declared=length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_refused:
            return
        self.body_received += len(data)
        if self.body_received > settings.REQUEST_BODY_MAX_BYTES:
            self.body_refuse(declared=None)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body_refused:  # what arrived with the headers completed the body: it still never reaches the app
            return
        super().requestReceived(command, path, version)

    def body_refuse(self, *, declared: int | None) -> None:
        self.body_refused = True
        if self.content is not None:  # a chunked body's bytes so far
            self.content.close()
            self.content = None
        channel = self.channel
        # Whatever the client still sends is read and dropped, as Twisted drops bytes after a connection's last one.
        channel.dataReceived = channel.rawDataReceived = channel.lineReceived = lambda data: None
        transport = channel.transport
        # The request line's path, which Twisted keeps on the channel until the body is in (request.path comes later).
        path = getattr(channel, "_path", b"") or b""
        transport.write(too_large_response(api=path.startswith(b"/api/")))
        client = getattr(transport.getPeer(), "host", None)
        extra = {"declared": declared, "limit": settings.REQUEST_BODY_MAX_BYTES, "client": client}
        logger.warning("request body refused", extra=extra)
        half_close = getattr(transport, "loseWriteConnection", None)
        if half_close is None:
            channel.loseConnection()
            return
        half_close()  # the answer, then end of stream; the client closes, or the linger ends
        reactor.callLater(REFUSED_BODY_LINGER_SECONDS, transport.loseConnection)


def too_large_response(*, api: bool = False) -> bytes:
    """The whole 413 answer: the sentence as an out-of-band #chat-error (role="alert"), as the app answers htmx; under
    /api/, {"error": ...} as the API answers (docs/api.md)."""
    if api:
        # The API's own limit (Django's, chat.api.too_large): any body over it is refused, here or there.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024
        body = json.dumps({"error": f"The body is too large: at most {limit} KiB."}).encode()
        content_type = "application/json"
    else:
        sentence = html.escape(too_large_sentence())
        body = (
            '<!DOCTYPE html>\n<meta charset="utf-8">\n'
            f'<div id="chat-error" role="alert" hx-swap-oob="true">{sentence}</div>\n'
        ).encode()
        content_type = "text/html; charset=utf-8"
    head = (
        "HTTP/1.1 413 Content Too Large\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Content-Security-Policy: default-src 'none'\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


class BodyLimitedHTTPFactory(HTTPFactory):
    """daphne's HTTP factory, making BodyLimitedRequest requests."""

    def buildProtocol(self, addr: object) -> object:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyLimitedRequest
        return protocol


class RestartingServer(Server):
    """On SIGTERM, each socket finishes its frame in hand, closes with 1012 and uncounts itself; then daphne stops.

    daphne's own SIGTERM handling stops the reactor at once: consumers are cancelled mid-frame (a message being
    stored is lost) and the connections drop without a close frame. The application cannot close with 1012
    itself (autobahn takes only 1000 and 3000-4999 from it), so the server does. The htmx ws extension
    reconnects after 1012, to another process or to this one's successor. A second SIGTERM stops at once.
    """

    stopping = False

    # daphne's run() makes its HTTPFactory and listens with it at once: the one it makes is replaced here, as it is
    # assigned, by one whose requests refuse an oversize body (BodyLimitedRequest).
    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = factory if isinstance(factory, BodyLimitedHTTPFactory) else BodyLimitedHTTPFactory(self)

    def run(self) -> None:
        # Twisted installs its own SIGTERM handler as the reactor starts; ours replaces it right after.
        reactor.callWhenRunning(signal.signal, signal.SIGTERM, self.sigterm)
        super().run()

    def sigterm(self, signum: int, frame: FrameType | None) -> None:
        reactor.callFromThread(self.stop_gracefully)

    def stop_gracefully(self) -> None:
        if self.stopping:
            self.stop_now()
            return
        self.stopping = True
        asyncio.ensure_future(self.close_sockets()).add_done_callback(lambda _closed: self.stop_now())

    def stop_now(self) -> None:
        with contextlib.suppress(ReactorNotRunning):  # already stopping
            self.stop()

    async def close_sockets(self) -> None:
        """Quiesce the room sockets (for FRAMES_IN_HAND_SECONDS at most), close every socket with 1012, wait until
        their consumers are done."""
        from chat.consumers.base import sockets_open, sockets_stop_taking_frames  # the application, loaded by now

        try:
            async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS):
                try:
                    async with asyncio.timeout(FRAMES_IN_HAND_SECONDS):
                        await sockets_stop_taking_frames()
                except TimeoutError:  # queued behind the database thread's work: their pages send them again
                    logger.warning("frames still in hand at shutdown", extra={"open_sockets": sockets_open()})
                for protocol in self.websockets(WebSocketProtocol.STATE_OPEN):
                    send_close_frame(protocol, CLOSE_SERVICE_RESTART)
                while sockets_open() or self.websockets(WebSocketProtocol.STATE_CLOSING):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            logger.warning("sockets still open at shutdown", extra={"open_sockets": sockets_open()})

    def websockets(self, state: int) -> list[WebSocketProtocol]:
        return [p for p in self.connections if isinstance(p, WebSocketProtocol) and p.state == state]
