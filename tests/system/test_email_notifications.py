"""Email notifications and password resets end to end: a real daphne, two real `manage.py db_worker` processes on
one SQLite file, and a real SMTP server (aiosmtpd) that keeps what it receives.

With CHAT_EMAIL_DELAY_SECONDS=3, a direct message to someone who is away reaches them as exactly one email with its
text and an absolute link; one they read in time, or in a muted conversation, sends nothing; the link that stops
the emails works without logging in, and so does a mail program's one-click unsubscribe. Every wait has a
deadline; nothing asserts how fast.
"""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from loadtest.client import Browser as HttpBrowser
from loadtest.client import loopback_target
from tests.support.servers import BASE_DIR, DaphneServer, free_port
from tests.system.clients import PATIENCE, Browser, database_rows, database_write, new_session, server_env

pytestmark = pytest.mark.system

DELAY_S = 3
# Room on top of the delay for a loaded machine: the workers poll every 0.2 s, a task may start a little late.
SLACK_S = 20
# How long a test waits to be sure that no email comes: past the delay, a worker's poll and a retry.
QUIET_S = DELAY_S + 4
LINK_RE = re.compile(r"https?://[^\s\"<>]+")


class Sink:
    """An SMTP server's handler that keeps every message it receives, parsed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [message for message in self.messages if address in str(message["To"])]


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[DaphneServer]:
    """The web process and two workers on one database, mailing through the sink."""
    base = tmp_path_factory.mktemp("emails")
    port = free_port()
    env = server_env(
        base,
        ACCOUNT_RATE_LIMITS="off",
        CHAT_EMAIL_DELAY_SECONDS=str(DELAY_S),
        CHAT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(sink.port),
        DEFAULT_FROM_EMAIL="chat@example.com",
    )
    server = DaphneServer(env=env, port=port, log_path=base / "daphne.log")
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--interval", "0.2", "--no-reload"],
            cwd=BASE_DIR,
            env=server.env,
            stdout=open(base / f"worker-{n}.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        for n in (1, 2)
    ]
    try:
        server.start()
        yield server
    finally:
        server.stop()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for n in (1, 2):
            # A worker that failed a task says so in its log: nothing here should have.
            assert "Traceback" not in Path(base / f"worker-{n}.log").read_text(errors="replace")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as session:
        yield session


def unique(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**9}"


async def person(session: aiohttp.ClientSession, site: DaphneServer, prefix: str, *, address: bool = True) -> Browser:
    """Someone signed up, with an email address of their own (set as an operator would)."""
    browser = await Browser.sign_up(session, site, unique(prefix))
    if address:
        name = browser.account.username
        database_write(
            site.env, "UPDATE accounts_user SET email = ? WHERE username = ?", [(f"{name}@example.com", name)]
        )
    return browser


def address(browser: Browser) -> str:
    return f"{browser.account.username}@example.com"


async def direct_message(author: Browser, recipient: Browser, text: str) -> None:
    """Send a private message from a room's page, as `/pm` typed in the box, and wait until it is stored."""
    tab = await author.open(unique("room"))
    try:
        await tab.send(f"/pm {recipient.account.username} {text}")
        await tab.until_text(text, f"the sender's copy of {text!r}")
    finally:
        await tab.close()


async def conversation_opened(reader: Browser, other: Browser) -> None:
    """The reader opens the direct conversation (its page, then its socket, which marks it read), then leaves."""
    status, _ = await reader.get(f"/dm/{other.account.username}/")
    assert status == 200
    target = loopback_target(reader.server.url)
    socket = await reader.session.ws_connect(
        f"{target.ws_base}/ws/dm/{other.account.username}/",
        origin=target.origin,
        headers={"Cookie": reader.account.cookie_header()},
    )
    try:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            frame = await socket.receive(timeout=PATIENCE)
            if frame.type == aiohttp.WSMsgType.TEXT and 'id="messages"' in frame.data:
                return
        raise AssertionError("the conversation's log never arrived")
    finally:
        await socket.close()


def emails_within(sink: Sink, to: str, count: int, seconds: float) -> list[EmailMessage]:
    """The emails to an address once there are `count` of them, failing after the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = sink.to(to)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} email(s) to {to} expected within {seconds:g} s, got {len(sink.to(to))}")


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


async def level_set(user: Browser, other: Browser, level: str) -> None:
    """The user sets what their direct conversation with `other` notifies them of, on its page, as a browser does."""
    page = HttpBrowser(user.session, loopback_target(user.server.url), PATIENCE)
    page.cookies = dict(user.account.cookies)
    path = f"/dm/{other.account.username}/notifications/"
    token = await page.form_token(path)
    status, _, location = await page.post(path, {"level": level, "csrfmiddlewaretoken": token})
    assert (status, location) == (302, path)


async def test_a_direct_message_to_someone_away_arrives_as_one_email_with_its_text_and_link(site, sink, session):
    alice = await person(session, site, "alice")
    bob = await person(session, site, "bob")
    await direct_message(alice, bob, "are you coming to the standup?")
    [received] = emails_within(sink, address(bob), 1, DELAY_S + SLACK_S)
    assert received["Subject"] == "1 message you missed in Chat"
    assert received["From"] == "chat@example.com"
    body = text_of(received)
    assert "are you coming to the standup?" in body
    assert alice.account.username in body
    link = next(url for url in LINK_RE.findall(body) if "/messages/" in url)
    assert link.startswith(f"{site.url}/dm/{alice.account.username}/messages/")
    status, page = await bob.get(link.removeprefix(site.url))
    assert status == 200
    assert "are you coming to the standup?" in page
    # Two workers poll the same tasks: still one email, and no second one later.
    time.sleep(QUIET_S)
    assert len(sink.to(address(bob))) == 1


async def test_a_message_read_in_time_or_in_a_muted_conversation_sends_nothing(site, sink, session):
    alice = await person(session, site, "alice")
    carol = await person(session, site, "carol")
    dave = await person(session, site, "dave")
    await conversation_opened(dave, alice)  # the conversation exists, then dave mutes it
    await level_set(dave, alice, "nothing")
    await direct_message(alice, carol, "read this soon")
    await direct_message(alice, dave, "into the void")
    await conversation_opened(carol, alice)
    time.sleep(QUIET_S)
    assert sink.to(address(carol)) == []
    assert sink.to(address(dave)) == []


async def test_the_unsubscribe_link_of_an_email_works_without_logging_in(site, sink, session):
    alice = await person(session, site, "alice")
    erin = await person(session, site, "erin")
    await direct_message(alice, erin, "first of many")
    [received] = emails_within(sink, address(erin), 1, DELAY_S + SLACK_S)
    header = received["List-Unsubscribe"].strip()
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = header.removeprefix("<").removesuffix(">")
    assert url in text_of(received)
    stranger = HttpBrowser(session, loopback_target(site.url), PATIENCE)
    status, page, _ = await stranger.get(url.removeprefix(site.url))
    assert status == 200
    assert "No more emails" in page
    await direct_message(alice, erin, "second, never emailed")
    time.sleep(QUIET_S)
    assert len(sink.to(address(erin))) == 1


async def test_a_mail_programs_one_click_unsubscribe_turns_the_emails_off(site, sink, session):
    alice = await person(session, site, "alice")
    frank = await person(session, site, "frank")
    await direct_message(alice, frank, "hello frank")
    [received] = emails_within(sink, address(frank), 1, DELAY_S + SLACK_S)
    url = received["List-Unsubscribe"].strip().removeprefix("<").removesuffix(">")
    # What RFC 8058 asks of the mail program: a POST of this one field, no cookies, no other header of ours.
    async with session.post(url, data={"List-Unsubscribe": "One-Click"}, allow_redirects=False) as response:
        assert response.status == 200
    rows = database_rows(
        site.env,
        "SELECT p.email_enabled FROM chat_notificationpreference p JOIN accounts_user u ON u.id = p.user_id"
        " WHERE u.username = ?",
        frank.account.username,
    )
    assert rows == [(0,)]
    await direct_message(alice, frank, "after the click")
    time.sleep(QUIET_S)
    assert len(sink.to(address(frank))) == 1


async def test_a_password_reset_mails_a_link_that_sets_a_new_password(site, sink, session):
    grace = await person(session, site, "grace")
    visitor = HttpBrowser(session, loopback_target(site.url), PATIENCE)
    token = await visitor.form_token("/accounts/password/reset/")
    status, _, location = await visitor.post(
        "/accounts/password/reset/", {"email": address(grace), "csrfmiddlewaretoken": token}
    )
    assert status == 302, location
    [received] = emails_within(sink, address(grace), 1, SLACK_S)
    body = received.get_body(("plain",)).get_content()
    link = next(url for url in LINK_RE.findall(body) if "/accounts/password/reset/key/" in url)
    status, _, location = await visitor.get(link.removeprefix(site.url))
    # allauth keeps the key in the session and redirects to the form without it in the URL.
    assert status in (200, 302), location
