"""Outgoing webhooks (chat/webhooks.py) against real HTTP servers on this machine: what is sent, what is read back,
and every guard: addresses, schemes, redirects, time and size."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from chat import webhooks
from chat.webhooks import WebhookFailed, WebhookRefused, webhook_deliver, webhook_signature_valid
from tests.support.http import Server, answer_text, http_servers

SECRET = "s3cret-of-the-bot"
PAYLOAD = {"event": "message", "message": {"id": 1, "room": "lobby", "author": "alice", "text": "@bot hi ✓"}}


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    with http_servers() as start:
        yield start


@pytest.fixture
def loopback_allowed(settings):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    settings.CHAT_WEBHOOK_TIMEOUT_SECONDS = 1.0


# --- What is sent and read -------------------------------------------------------------------------------------------


def test_the_payload_goes_as_signed_json_and_a_text_answer_is_the_reply(serve, loopback_allowed):
    server = serve(answer_text("  hello alice  "))

    answer = webhook_deliver(url=server.url + "?bot=7", secret=SECRET, payload=PAYLOAD)

    assert (answer.status, answer.reply) == (200, "hello alice")
    [request] = server.received
    assert request.path == "/hook?bot=7"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Host"] == f"127.0.0.1:{server.port}"
    assert json.loads(request.body) == PAYLOAD
    timestamp = request.headers["X-Chat-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 5
    signature = request.headers["X-Chat-Signature"]
    assert signature.startswith("sha256=")
    assert webhook_signature_valid(secret=SECRET, timestamp=timestamp, body=request.body, signature=signature)
    assert not webhook_signature_valid(secret="other", timestamp=timestamp, body=request.body, signature=signature)
    assert not webhook_signature_valid(
        secret=SECRET, timestamp=timestamp, body=request.body + b" ", signature=signature
    )


def test_a_json_answer_s_text_is_the_reply(serve, loopback_allowed):
    server = serve(answer_text(json.dumps({"text": "from json"}), content_type="application/json"))
    assert webhook_deliver(url=server.url, secret=SECRET, payload=PAYLOAD).reply == "from json"


@pytest.mark.parametrize(
    ("text", "content_type"),
    [("", "text/plain"), ("   ", "text/plain"), ("{}", "application/json"), ("<p>hi</p>", "text/html")],
)
def test_an_empty_or_other_answer_is_no_reply(serve, loopback_allowed, text, content_type):
    server = serve(answer_text(text, content_type=content_type))
    assert webhook_deliver(url=server.url, secret=SECRET, payload=PAYLOAD).reply is None


def test_an_error_status_fails(serve, loopback_allowed):
    server = serve(answer_text("boom", status=500))
    with pytest.raises(WebhookFailed, match="500"):
        webhook_deliver(url=server.url, secret=SECRET, payload=PAYLOAD)


def test_no_redirect_is_followed(serve, loopback_allowed):
    elsewhere = serve(answer_text("should never be asked"))

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(307)
        handler.send_header("Location", elsewhere.url)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = serve(redirect)
    with pytest.raises(WebhookFailed, match="redirect"):
        webhook_deliver(url=server.url, secret=SECRET, payload=PAYLOAD)
    assert len(server.received) == 1
    assert elsewhere.received == []


def test_an_answer_over_the_size_cap_fails(serve, loopback_allowed, settings):
    settings.CHAT_WEBHOOK_MAX_RESPONSE_BYTES = 1000
    server = serve(answer_text("x" * 1001))
    with pytest.raises(WebhookFailed, match="1000"):
        webhook_deliver(url=server.url, secret=SECRET, payload=PAYLOAD)


def test_an_answer_without_a_length_is_cut_at_the_cap(serve, loopback_allowed, settings):
    settings.CHAT_WEBHOOK_MAX_RESPONSE_BYTES = 1000

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.end_headers()
        for _ in range(1000):
            handler.wfile.write(b"y" * 100)

    server = serve(endless)
    with pytest.raises(WebhookFailed, match="longer than 1000 bytes"):
        webhook_deliver(url=server.url, secret=SECRET, payload=PAYLOAD)


def test_a_server_that_does_not_answer_in_time_fails_at_the_deadline(serve, loopback_allowed):
    server = serve(lambda handler: time.sleep(3))
    started = time.monotonic()
    with pytest.raises(WebhookFailed, match="longer than the time allowed"):
        webhook_deliver(url=server.url, secret=SECRET, payload=PAYLOAD)
    assert time.monotonic() - started < 2


def test_a_server_dripping_its_answer_is_cut_at_the_deadline(serve, loopback_allowed):
    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b"z")
            handler.wfile.flush()
            time.sleep(0.1)

    server = serve(drip)
    started = time.monotonic()
    with pytest.raises(WebhookFailed):
        webhook_deliver(url=server.url, secret=SECRET, payload=PAYLOAD)
    assert time.monotonic() - started < 2


def test_a_closed_port_fails(loopback_allowed):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WebhookFailed):
        webhook_deliver(url=f"http://127.0.0.1:{port}/", secret=SECRET, payload=PAYLOAD)


# --- Where it may go ------------------------------------------------------------------------------------------------


def test_loopback_is_refused_unless_the_setting_allows_it_and_nothing_is_sent(serve, settings):
    server = serve(answer_text("hi"))
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    for url in (server.url, f"http://localhost:{server.port}/hook"):
        with pytest.raises(WebhookRefused, match="not a public address"):
            webhook_deliver(url=url, secret=SECRET, payload=PAYLOAD)
    assert server.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://127.1/",
        "http://2130706433/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
    ],
)
def test_private_loopback_link_local_and_other_special_addresses_are_refused(settings, url):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(WebhookRefused):
        webhook_deliver(url=url, secret=SECRET, payload=PAYLOAD)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http:///nohost",
        "http://user:pw@example.com/",
    ],
)
def test_other_schemes_a_missing_host_or_credentials_are_refused(url):
    with pytest.raises(WebhookRefused):
        webhook_deliver(url=url, secret=SECRET, payload=PAYLOAD)


def test_a_name_with_any_private_address_is_refused(monkeypatch, settings):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    found = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 80)),
    ]
    monkeypatch.setattr(webhooks.socket, "getaddrinfo", lambda *args, **kwargs: found)
    with pytest.raises(WebhookRefused, match=r"10\.0\.0\.5"):
        webhook_deliver(url="http://bot.example/", secret=SECRET, payload=PAYLOAD)


def test_the_connection_goes_to_the_address_checked_not_to_a_second_lookup(serve, loopback_allowed, monkeypatch):
    server = serve(answer_text("pinned"))
    lookups = []

    def resolve(host, port, *args, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(webhooks.socket, "getaddrinfo", resolve)

    answer = webhook_deliver(url=f"http://bot.example:{server.port}/hook", secret=SECRET, payload=PAYLOAD)

    assert answer.reply == "pinned"
    assert lookups.count("bot.example") == 1  # then only the checked address itself
    assert server.received[0].headers["Host"] == f"bot.example:{server.port}"


def test_a_name_that_does_not_resolve_is_refused():
    with pytest.raises(WebhookRefused, match="does not resolve"):
        webhook_deliver(url="http://no-such-host.invalid/", secret=SECRET, payload=PAYLOAD)


@pytest.mark.parametrize(
    ("address", "public"),
    [("93.184.215.14", True), ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True), ("127.0.0.1", False), ("::", False)],
)
def test_which_addresses_are_public(address, public):
    assert webhooks.address_public(address) is public


# --- TLS -------------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(serve, tmp_path, monkeypatch) -> Callable[[str], Server]:
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names `name`, trusted as if a CA had signed it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")

    def start(name: str) -> Server:
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"]
        subprocess.run(
            [*request, "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
        trusted = ssl.create_default_context(cafile=str(cert))
        monkeypatch.setattr(webhooks.ssl, "create_default_context", lambda: trusted)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        return serve(answer_text("over tls"), tls=context)

    return start


def resolving_to_loopback(monkeypatch) -> None:
    real = socket.getaddrinfo
    monkeypatch.setattr(
        webhooks.socket,
        "getaddrinfo",
        lambda host, port, *args, **kwargs: real("127.0.0.1", port, *args, **kwargs),
    )


def test_https_checks_the_certificate_against_the_url_s_host_while_connecting_to_the_checked_address(
    tls_server, loopback_allowed, monkeypatch
):
    server = tls_server("bot.example")
    resolving_to_loopback(monkeypatch)

    answer = webhook_deliver(url=f"https://bot.example:{server.port}/hook", secret=SECRET, payload=PAYLOAD)

    assert answer.reply == "over tls"
    assert server.received[0].headers["Host"] == f"bot.example:{server.port}"


def test_https_to_a_host_its_certificate_does_not_name_fails(tls_server, loopback_allowed, monkeypatch):
    server = tls_server("someone-else.example")
    resolving_to_loopback(monkeypatch)
    with pytest.raises(WebhookFailed, match="SSLCertVerificationError"):
        webhook_deliver(url=f"https://bot.example:{server.port}/hook", secret=SECRET, payload=PAYLOAD)
    assert server.received == []
