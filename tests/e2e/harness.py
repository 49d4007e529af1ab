"""Browser-side helpers of the end-to-end suite: users with their own browser context, and room tabs."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Dialog, Locator, Page, WebSocket, expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = f"Chromium not found at {CHROMIUM}: apt install chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT = {"width": 1200, "height": 800}
# Devices a test may ask for instead (`new_user("alice", device=PHONE)`): a phone held upright, with touch, and the
# desktop width the keyboard and layout points were reported at.
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
# What "live" means here: a message reaches every open page within this many milliseconds.
LIVE_MS = 5_000
# Long enough for the ws extension's backoff (full jitter: 1, 2, 4, 8 s caps) to find a restarted server.
RECONNECT_MS = 25_000
# After a long outage the extension waits up to 64 s between two tries (1 s x 2^min(tries, 6), times a random
# fraction), so a page that was offline for half a minute or more is sure to be back only after that, plus its join.
RECONNECT_AFTER_OUTAGE_MS = 64_000 + 15_000
SOCKET_PATH = "/ws/chat/"
DIRECTORY_SOCKET_PATH = "/ws/directory/"

_serial = itertools.count(1)
_used_names: set[str] = set()


def unique_name(prefix: str) -> str:
    """A user or room name not used before in this test session: the prefix itself first, then prefix-N."""
    name = prefix
    while name.lower() in _used_names:
        name = f"{prefix}{next(_serial)}"
    _used_names.add(name.lower())
    return name


def wait_until(predicate: Callable[[], bool], page: Page, timeout_ms: float, what: str) -> None:
    """Poll a condition that only Playwright's events can change, letting the page dispatch them meanwhile."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_ms / 1000:g} s waiting for {what}")
        page.wait_for_timeout(50)


@dataclass
class SocketWatch:
    """The sockets one page opened to a path (room sockets by default), and what they received."""

    path: str = SOCKET_PATH
    sockets: list[WebSocket] = field(default_factory=list)
    frames: dict[int, int] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)

    def attach(self, page: Page) -> None:
        page.on("websocket", self._opened)

    def _opened(self, socket: WebSocket) -> None:
        if self.path not in socket.url:
            return
        index = len(self.sockets)
        self.sockets.append(socket)
        self.frames[index] = 0
        socket.on("framereceived", lambda _payload: self._received(index))
        socket.on("close", lambda _socket: self.closed.add(index))

    def _received(self, index: int) -> None:
        self.frames[index] += 1

    @property
    def live(self) -> bool:
        """The newest socket is open and the server has spoken on it (it sends the log on connect)."""
        if not self.sockets:
            return False
        newest = len(self.sockets) - 1
        return newest not in self.closed and self.frames[newest] > 0


@dataclass
class Tab:
    """One browser tab of one user with a room page open."""

    user: ChatUser
    page: Page
    room: str
    watch: SocketWatch

    @property
    def messages(self) -> Locator:
        return self.page.locator("#messages")

    @property
    def message_input(self) -> Locator:
        return self.page.locator('#message-form input[name="message"]')

    @property
    def online_users(self) -> Locator:
        return self.page.locator("#online-users")

    @property
    def error(self) -> Locator:
        return self.page.locator("#chat-error")

    def message(self, body: str) -> Locator:
        """The messages in this tab's log whose text is exactly this body."""
        return self.messages.locator("article.message").filter(
            has=self.page.locator(".message-body", has_text=re.compile(rf"^\s*{re.escape(body)}\s*$"))
        )

    @property
    def typing(self) -> Locator:
        """The line under the log where "<name> is typing…" notices show."""
        return self.page.locator("#typing")

    def typing_notice(self, username: str) -> Locator:
        return self.typing.locator(".typing-notice", has_text=f"{username} is typing…")

    def online_user(self, username: str) -> Locator:
        """The entry of a user in this tab's online list (a button with the username)."""
        return self.online_users.locator("li button", has_text=re.compile(rf"^\s*{re.escape(username)}\s*$"))

    def user_pk(self, username: str) -> int:
        """A listed user's primary key, read from the id of their entry in the online list (`online-user-<pk>`)."""
        name = re.compile(rf"^\s*{re.escape(username)}\s*$")
        entry = self.online_users.locator("li").filter(has=self.page.locator("button", has_text=name))
        expect(entry).to_have_count(1)
        return int(str(entry.get_attribute("id")).removeprefix("online-user-"))

    def sockets_opened(self) -> int:
        return len(self.watch.sockets)

    def wait_connected(self, timeout_ms: float = 10_000, after: int = 0) -> None:
        """Wait until the room socket is open and synced (opened after `after` earlier sockets), and self is listed."""
        wait_until(
            lambda: len(self.watch.sockets) > after and self.watch.live,
            self.page,
            timeout_ms,
            f"{self.user.username}'s socket to {self.room} to open and receive the room's state",
        )
        # In the list, shown or not: on a phone the online list is folded until "Online" is tapped.
        expect(self.online_user(self.user.username)).to_be_attached(timeout=timeout_ms)

    def send(self, text: str) -> None:
        """Type a message and press Enter, as a person does."""
        self.message_input.fill(text)
        self.message_input.press("Enter")

    def post(self, text: str) -> Locator:
        """Send a room message and wait until it is in this tab's own log and the fresh, empty form is back.

        Before sending again: text typed before the server's fresh form arrives is replaced by that form.
        """
        self.send(text)
        expect(self.message_input).to_have_value("", timeout=LIVE_MS)
        message = self.message(text)
        expect(message).to_have_count(1, timeout=LIVE_MS)
        return message

    def close(self) -> None:
        self.page.close()

    def leave_to_directory(self) -> DirectoryTab:
        """Follow the room header's "All rooms" link in this tab, and wait until the directory is live."""
        watch = SocketWatch(path=DIRECTORY_SOCKET_PATH)
        watch.attach(self.page)
        self.page.locator(".room-header").get_by_role("link", name="All rooms").click()
        directory = DirectoryTab(user=self.user, page=self.page, watch=watch)
        directory.wait_connected()
        return directory


@dataclass
class DirectoryTab:
    """One browser tab of one user with the room directory open, and its directory socket."""

    user: ChatUser
    page: Page
    watch: SocketWatch

    def row(self, room: str) -> Locator:
        """The directory's entry of a room (`li#room-<name lowercased>`)."""
        return self.page.locator(f"#room-list > li#room-{room.lower()}")

    def room_pk(self, room: str) -> int:
        """The room's primary key, read from the id of its online count (`online-<pk>`)."""
        count = self.row(room).locator(".online-count")
        expect(count).to_have_count(1)
        return int(str(count.get_attribute("id")).removeprefix("online-"))

    def wait_connected(self, timeout_ms: float = 10_000, after: int = 0) -> None:
        """Wait until the directory socket is open and the server has sent the room list on it."""
        wait_until(
            lambda: len(self.watch.sockets) > after and self.watch.live,
            self.page,
            timeout_ms,
            f"{self.user.username}'s directory socket to open and receive the room list",
        )

    def reload(self) -> None:
        opened = len(self.watch.sockets)
        self.page.reload()
        self.wait_connected(after=opened)


@dataclass
class ChatUser:
    """A signed-up, logged-in user with a browser context of their own."""

    username: str
    password: str
    context: BrowserContext
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    # Dialogs are dismissed unless a test has asked for the next ones to be accepted (a confirm() it expects).
    dialogs_to_accept: int = 0

    def new_page(self, socket_path: str = SOCKET_PATH) -> tuple[Page, SocketWatch]:
        """A new tab that records its console, its dialogs (alerts) and its sockets to a path (room sockets)."""
        page = self.context.new_page()
        watch = SocketWatch(path=socket_path)
        watch.attach(page)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on("dialog", self._dialog)
        return page, watch

    def _console(self, message: ConsoleMessage) -> None:
        """Keep the line, with the URL it is about (a failed load names only its status, not what failed)."""
        url = message.location.get("url")
        self.console.append(f"{message.type}: {message.text}" + (f" ({url})" if url else ""))

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        if self.dialogs_to_accept > 0:
            self.dialogs_to_accept -= 1
            dialog.accept()
        else:
            dialog.dismiss()

    def accept_next_dialog(self) -> None:
        """Accept (rather than dismiss) the next dialog any of this user's pages opens, e.g. an hx-confirm."""
        self.dialogs_to_accept += 1

    def open_room(self, room: str, *, connected: bool = True) -> Tab:
        """Open a room in a new tab and, by default, wait until its socket is open."""
        page, watch = self.new_page()
        page.goto(f"/chat/{room}/")
        tab = Tab(user=self, page=page, room=room, watch=watch)
        if connected:
            tab.wait_connected()
        return tab

    def open_directory(self) -> Page:
        page, _watch = self.new_page()
        page.goto("/chat/")
        return page

    def open_live_directory(self) -> DirectoryTab:
        """Open the directory in a new tab and wait until its socket has sent the room list."""
        page, watch = self.new_page(DIRECTORY_SOCKET_PATH)
        page.goto("/chat/")
        directory = DirectoryTab(user=self, page=page, watch=watch)
        directory.wait_connected()
        return directory


def new_context(browser: Browser, base_url: str, device: dict | None = None) -> BrowserContext:
    context = browser.new_context(base_url=base_url, **(device or {"viewport": VIEWPORT}))
    context.set_default_timeout(15_000)
    return context


def new_password() -> str:
    return f"e2e-{secrets.token_urlsafe(12)}"


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"', html)
    if found is None:
        raise AssertionError("no csrfmiddlewaretoken in the signup page")
    return found.group(1)


def sign_up_by_request(context: BrowserContext, username: str, password: str) -> None:
    """POST the real signup form through the context's cookie jar; allauth logs the context in."""
    page = context.request.get("/accounts/signup/")
    assert page.ok, f"GET /accounts/signup/ answered {page.status}"
    response = context.request.post(
        "/accounts/signup/",
        form={
            "csrfmiddlewaretoken": csrf_token(page.text()),
            "username": username,
            "email": "",
            "password1": password,
            "password2": password,
        },
    )
    if not response.ok or response.url.rstrip("/").endswith("/accounts/signup"):
        errors = re.findall(r'<(?:ul|p|div)[^>]*class="[^"]*error[^"]*"[^>]*>(.*?)</', response.text(), re.S)
        raise AssertionError(f"signup of {username} failed: {response.status} {response.url} {errors}")
