"""Real HTTP servers on 127.0.0.1 standing in for what the chat calls out to (a bot's webhook): each POST is recorded,
then answered by the test's own function (`Answer`), over HTTPS when given a TLS context."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# Answers the request on the handler; the request as recorded is `handler.received`.
Answer = Callable[[BaseHTTPRequestHandler], None]


def answer_text(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        data = text.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


@dataclass
class Server:
    url: str
    port: int
    received: list[Received] = field(default_factory=list)


@contextlib.contextmanager
def http_servers() -> Iterator[Callable[..., Server]]:
    """`start(answer, tls=None)` starts one more server (its URL ends in /hook); all stop on leaving."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer, *, tls: ssl.SSLContext | None = None) -> Server:
        record = Server(url="", port=0)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.received = Received("POST", self.path, dict(self.headers.items()), body)
                record.received.append(self.received)
                # The client may give up first, as it should.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    answer(self)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        record.port = server.server_address[1]
        record.url = f"http://127.0.0.1:{record.port}/hook"
        return record

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
