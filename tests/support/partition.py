"""A TCP proxy that can stop forwarding without closing anything: a network partition, as a firewall dropping
packets makes one (a stopped server refuses connections at once; a partition answers nothing)."""

from __future__ import annotations

import socket
import threading

from tests.support.servers import free_port


class PartitionProxy:
    """Forwards 127.0.0.1:<port> to a target; `partition()` stops forwarding both ways (connections stay open, new
    ones are accepted and left silent), `heal()` forwards again, the bytes held meanwhile included."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets: list[socket.socket] = [self.listener]
        self.closed = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PartitionProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def partition(self) -> None:
        self.forwarding.clear()

    def heal(self) -> None:
        self.forwarding.set()

    def close(self) -> None:
        self.closed = True
        self.forwarding.set()
        for sock in self.sockets:
            sock.close()

    def __enter__(self) -> PartitionProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while not self.closed:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                sink.close()
                return
            # Held, not dropped: TCP would retransmit them once the partition heals.
            self.forwarding.wait()
            try:
                sink.sendall(data)
            except OSError:
                return
