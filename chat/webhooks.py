"""Outgoing webhooks: one signed JSON POST to a URL someone else chose, guarded, and the text it answers.

A bot's owner picks the URL, so the request must not become a way into our own network (SSRF):

- only http and https, no credentials in the URL;
- the host is resolved once and every address it has must be public (not private, loopback, link-local, shared,
  reserved, multicast or unspecified, IPv4-mapped ones included) unless CHAT_WEBHOOK_ALLOW_PRIVATE is on; the
  connection then goes to an address so checked, never to a second lookup (a DNS answer that changes in between
  cannot send it elsewhere);
- no redirect is followed: a 3xx answer is a failure;
- one deadline for the whole exchange (CHAT_WEBHOOK_TIMEOUT_SECONDS), connecting and every read included, so a
  server sending a byte at a time cannot hold a worker;
- at most CHAT_WEBHOOK_MAX_RESPONSE_BYTES of answer are read.

The body is signed with the bot's secret: `X-Chat-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with
the Unix time in `X-Chat-Timestamp`, so that the receiver can check who sent it and refuse replays.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

logger = logging.getLogger(__name__)

USER_AGENT = "chat-webhooks/1"
SIGNATURE_HEADER = "X-Chat-Signature"
TIMESTAMP_HEADER = "X-Chat-Timestamp"


class WebhookRefused(Exception):
    """The URL may not be called: nothing was sent."""


class WebhookFailed(Exception):
    """The request was tried and did not succeed: no connection, too slow, a redirect, an error status, too long."""


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    # What to post back as the bot's reply: a text/plain body, or {"text": "..."} in JSON; None for nothing.
    reply: str | None


def webhook_sign(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_signature_valid(*, secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver checks (constant time); it should also refuse a timestamp minutes old."""
    if not timestamp.isdigit():
        return False
    return hmac.compare_digest(webhook_sign(secret=secret, timestamp=int(timestamp), body=body), signature)


def webhook_deliver(*, url: str, secret: str, payload: dict) -> WebhookAnswer:
    """POST the payload as signed JSON to `url` with every guard above; the answer's reply text, if any.

    Raises WebhookRefused before sending anything to a URL that may not be called, WebhookFailed otherwise.
    """
    target = webhook_target(url)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(time.time())
    headers = {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: webhook_sign(secret=secret, timestamp=timestamp, body=body),
    }
    deadline = time.monotonic() + settings.CHAT_WEBHOOK_TIMEOUT_SECONDS
    connection = target.connection(deadline)
    # Every socket read also has a timeout, but a server sending a byte just within each one could go on for ever:
    # at the deadline the socket is shut, which ends whatever read is waiting.
    opened: list[socket.socket] = []
    watchdog = threading.Timer(settings.CHAT_WEBHOOK_TIMEOUT_SECONDS, sockets_cut, args=[opened])
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        sock = connection.sock
        opened.append(sock)
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        content = read_capped(response, sock, deadline)
    except (OSError, http.client.HTTPException) as error:  # socket.timeout and ssl errors are OSErrors
        if time.monotonic() >= deadline:
            raise WebhookFailed(f"{target.host} took longer than the time allowed") from error
        raise WebhookFailed(f"{type(error).__name__} from {target.host}") from error
    finally:
        watchdog.cancel()
        connection.close()
    if 300 <= response.status < 400:
        raise WebhookFailed(f"{target.host} answered {response.status}: redirects are not followed")
    if not 200 <= response.status < 300:
        raise WebhookFailed(f"{target.host} answered {response.status}")
    return WebhookAnswer(status=response.status, reply=reply_of(response, content))


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    # The checked address the connection goes to.
    address: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def connection(self, deadline: float) -> http.client.HTTPConnection:
        remaining = max(0.001, deadline - time.monotonic())
        if self.scheme == "https":
            return PinnedHTTPSConnection(self.host, self.port, address=self.address, timeout=remaining)
        return PinnedHTTPConnection(self.host, self.port, address=self.address, timeout=remaining)


def webhook_target(url: str) -> Target:
    """Where `url` may be called, its host resolved and checked; WebhookRefused when it may not be."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookRefused(f"not a URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookRefused("only http and https URLs can be called")
    if not parts.hostname:
        raise WebhookRefused("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("the URL may not carry credentials")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    address = address_checked(parts.hostname, port)
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, path=path, address=address)


def address_checked(host: str, port: int) -> str:
    """The first address of `host`, once every one of them is allowed (a name with one private address is refused:
    which one a client would use is not ours to predict)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise WebhookRefused(f"{host} does not resolve") from error
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if not addresses:
        raise WebhookRefused(f"{host} does not resolve")
    if not settings.CHAT_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if not address_public(address):
                raise WebhookRefused(f"{host} resolves to {address}, which is not a public address")
    return addresses[0]


def address_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address, whatever the name would resolve to now."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same over TLS: the certificate is checked against the URL's host name (SNI too)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def sockets_cut(opened: list[socket.socket]) -> None:
    for sock in opened:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def read_capped(response: http.client.HTTPResponse, sock: socket.socket, deadline: float) -> bytes:
    """The answer's body, at most CHAT_WEBHOOK_MAX_RESPONSE_BYTES, all of it before the deadline."""
    cap = settings.CHAT_WEBHOOK_MAX_RESPONSE_BYTES
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise WebhookFailed(f"the answer is {int(declared)} bytes; at most {cap} are read")
    chunks, size = [], 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WebhookFailed("the answer took longer than the time allowed")
        sock.settimeout(remaining)  # each read waits at most what is left
        chunk = response.read1(min(16384, cap + 1 - size))
        if not chunk:
            # An end forced by the deadline (the socket shut), or before the length announced, is no answer.
            if time.monotonic() >= deadline:
                raise WebhookFailed("the answer took longer than the time allowed")
            if response.length:
                raise WebhookFailed("the answer ended before its announced length")
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise WebhookFailed(f"the answer is longer than {cap} bytes")


def reply_of(response: http.client.HTTPResponse, content: bytes) -> str | None:
    """A text/plain body is the reply; so is JSON's "text"; anything else (or blank) is none."""
    content_type = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
    try:
        text = content.decode()
    except UnicodeDecodeError as error:
        raise WebhookFailed("the answer is not UTF-8") from error
    if content_type == "application/json":
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError as error:
            raise WebhookFailed("the answer is not valid JSON") from error
        text = data.get("text") if isinstance(data, dict) else None
        if text is not None and not isinstance(text, str):
            raise WebhookFailed('the answer\'s "text" is not a string')
    elif content_type not in ("text/plain", ""):
        return None
    if text is None:
        return None
    return text.strip() or None
