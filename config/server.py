"""daphne's Server, stopping gracefully: on SIGTERM the sockets close with 1012 (Service Restart), not a drop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from types import FrameType

from daphne.server import Server, reactor
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet.error import ReactorNotRunning

from chat.transport import send_close_frame

logger = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012
# Seconds a stopping server gives its sockets to finish the frame in hand and close (SECURITY.md, "Restarts").
SHUTDOWN_GRACE_SECONDS = 10.0


class RestartingServer(Server):
    """On SIGTERM, each socket finishes its frame in hand, closes with 1012 and uncounts itself; then daphne stops.

    daphne's own SIGTERM handling stops the reactor at once: consumers are cancelled mid-frame (a message being
    stored is lost) and the connections drop without a close frame. The application cannot close with 1012
    itself (autobahn takes only 1000 and 3000-4999 from it), so the server does. The htmx ws extension
    reconnects after 1012, to another process or to this one's successor. A second SIGTERM stops at once.
    """

    stopping = False

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
        """Quiesce the room sockets, close every socket with 1012, wait until their consumers are done."""
        from chat.consumers.base import sockets_open, sockets_stop_taking_frames  # the application, loaded by now

        try:
            async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS):
                await sockets_stop_taking_frames()
                for protocol in self.websockets(WebSocketProtocol.STATE_OPEN):
                    send_close_frame(protocol, CLOSE_SERVICE_RESTART)
                while sockets_open() or self.websockets(WebSocketProtocol.STATE_CLOSING):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            logger.warning("sockets still open at shutdown", extra={"open_sockets": sockets_open()})

    def websockets(self, state: int) -> list[WebSocketProtocol]:
        return [p for p in self.connections if isinstance(p, WebSocketProtocol) and p.state == state]
