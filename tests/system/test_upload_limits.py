"""A request body over the limit, against the real daphne the Procfile runs: answered 413 before it is read.

Twisted's HTTP takes a whole request body before daphne hands it to the application, so only the server itself
can refuse in time (config/server.py, BodyLimitedRequest). These tests talk to it over plain sockets, as a client
that lies about its body or keeps sending would. None asserts how fast: without the refusal no answer ever comes
(the server waits for the 1 GiB), and the socket's timeout ends the test.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.html import visible_text
from tests.support.servers import DaphneServer
from tests.system.clients import PATIENCE, Browser, new_session, server_env, server_log

pytestmark = pytest.mark.system

GiB = 1024**3
LIMIT = 10 * 1024 * 1024 + 64 * 1024  # CHAT_ATTACHMENT_MAX_BYTES (10 MiB) and the form around the file
SENTENCE = "Files can be at most 10 MiB, one at a time; that upload is larger."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    base = tmp_path_factory.mktemp("uploads")
    with DaphneServer(env=server_env(base), log_path=base / "daphne.log") as server:
        yield server


def request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it ends the connection."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def status_and_body(answer: bytes) -> tuple[int, dict[str, str], str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in header_lines)}
    return int(status_line.split()[1]), headers, body.decode()


@pytest.mark.parametrize("path", ["/chat/lobby/attachments/", "/dm/bob/attachments/", "/accounts/login/"])
def test_a_body_declared_over_the_limit_gets_413_before_it_is_sent(server, path):
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        head = request_head(path, "Content-Type: multipart/form-data; boundary=x", f"Content-Length: {GiB}")
        sock.sendall(head + b"x" * 1024)  # 1 KiB of the 1 GiB declared; the rest never comes

        status, headers, body = status_and_body(read_answer(sock))

    assert status == 413
    assert headers["connection"] == "close"
    # The upload form's sentence, in #chat-error: htmx swaps it in (a 413 is swapped, base.html), a browser shows it.
    assert re.search(r'<div id="chat-error" role="alert" hx-swap-oob="true">', body)
    assert visible_text(body) == SENTENCE
    assert "request body refused" in server_log(server)


def test_a_body_declared_over_the_limit_under_api_gets_the_api_s_json(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        sock.sendall(
            request_head("/api/v1/rooms/lobby/messages", "Content-Type: application/json", f"Content-Length: {GiB}")
        )

        status, headers, body = status_and_body(read_answer(sock))

    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "The body is too large: at most 64 KiB."}


def test_a_body_one_byte_over_the_limit_is_refused_and_one_at_the_limit_is_not(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        sock.sendall(request_head("/chat/lobby/attachments/", f"Content-Length: {LIMIT + 1}"))
        assert status_and_body(read_answer(sock))[0] == 413
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        sock.sendall(request_head("/chat/lobby/attachments/", f"Content-Length: {LIMIT}") + b"\0" * LIMIT)
        # The whole body reached the application, which answered (an anonymous upload: to the login page).
        assert status_and_body(read_answer_of_one(sock))[0] == 302


def read_answer_of_one(sock: socket.socket) -> bytes:
    """One answer on a connection the server keeps open: its head, then as many body bytes as it announces."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_chunked_body_is_refused_once_it_grows_past_the_limit(server):
    piece = b"\0" * 65536
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        sock.sendall(request_head("/chat/lobby/attachments/", "Transfer-Encoding: chunked"))
        for _ in range(LIMIT // len(piece) + 2):  # just past the limit; no final chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))

        status, _, body = status_and_body(read_answer(sock))

    assert status == 413
    assert visible_text(body) == SENTENCE


async def test_an_upload_under_the_limit_still_reaches_the_room(server):
    async with new_session() as session:
        alice = await Browser.sign_up(session, server, "uploader")
        status, page = await alice.get("/chat/lobby/")
        assert status == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
        form = aiohttp.FormData()
        form.add_field("csrfmiddlewaretoken", token)
        form.add_field("caption", "notes")
        form.add_field("file", b"n" * 200_000, filename="notes.txt", content_type="text/plain")
        headers = {"Cookie": alice.account.cookie_header(), "Referer": server.url + "/chat/lobby/"}
        async with session.post(
            server.url + "/chat/lobby/attachments/", data=form, headers=headers, allow_redirects=False
        ) as response:
            assert response.status == 302
        status, page = await alice.get("/chat/lobby/")
        assert "notes.txt" in page
