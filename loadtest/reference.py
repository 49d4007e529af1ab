"""The floor to measure the chat against: a bare broadcast server on the chat's own server stack.

    python -m loadtest.reference --port 8200

Twisted on its asyncio reactor with autobahn's WebSocket protocol, as daphne runs them, and nothing else: no
Django, no channel layer, no database, no accounts. A socket at /ws/chat/<room>/ gets an empty online list; each
text frame's "message" is escaped into a message element of the chat's size and written to every socket of the
room, framed once (autobahn's PreparedMessage). The load generator drives it with `--bare` (no sign-in, no room
pages), so the same scenario measures both; `python -m loadtest.bench --reference` runs them side by side.
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import sys
from collections import defaultdict

from twisted.internet import asyncioreactor

asyncioreactor.install()

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # noqa: E402
from twisted.internet import reactor  # noqa: E402

# About the size of the chat's message-live fragment, with the same marks the load generator looks for.
MESSAGE = (
    '<span id="typing-{author}" hx-swap-oob="delete"></span><div hx-swap-oob="beforeend:#messages">'
    '<article id="message-{pk}" class="message by-u{author}"><header><span class="message-author">load{author}'
    '</span><time datetime="2026-01-01T00:00:00+00:00" title="Jan. 1, 2026, midnight">00:00</time>'
    '<span class="own-actions" hx-target="closest article" hx-swap="outerHTML"><button type="button" '
    'class="link-button" hx-get="/chat/messages/{pk}/edit/">Edit</button><button type="button" '
    'class="link-button" hx-post="/chat/messages/{pk}/delete/" hx-confirm="Delete this message?">Delete</button>'
    '</span></header><p class="message-body">{text}</p></article></div>'
)
ONLINE = '<ul id="online-users" hx-swap-oob="true"></ul>'

rooms: dict[str, set[WebSocketServerProtocol]] = defaultdict(set)
message_ids = itertools.count(1)


class BroadcastProtocol(WebSocketServerProtocol):
    room = ""

    def onConnect(self, request) -> None:
        self.room = request.path

    def onOpen(self) -> None:
        rooms[self.room].add(self)
        self.sendMessage(ONLINE.encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            return
        try:
            text = json.loads(payload)["message"]
        except (ValueError, KeyError, TypeError):
            return
        frame = MESSAGE.format(pk=next(message_ids), author=id(self) % 1000, text=html.escape(str(text)))
        prepared = self.factory.prepareMessage(frame.encode())
        for peer in rooms[self.room]:
            peer.sendPreparedMessage(prepared)

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:
        rooms[self.room].discard(self)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{args.port}")
    factory.protocol = BroadcastProtocol
    # daphne's limits, so both servers frame and accept alike.
    factory.setProtocolOptions(maxFramePayloadSize=65536, maxMessagePayloadSize=2097152, autoPingInterval=20)
    reactor.listenTCP(args.port, factory, interface="127.0.0.1")
    print(f"reference broadcast server on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
