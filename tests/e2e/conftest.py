"""Harness of the end-to-end suite: real daphne servers, headless Chromium, users, artifacts of failures."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from tests.e2e.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CHROMIUM_MISSING,
    ChatUser,
    new_context,
    new_password,
    sign_up_by_request,
    unique_name,
)
from tests.support.servers import BASE_DIR, DaphneServer, migrate

E2E_DIR = Path(__file__).resolve().parent
ARTIFACTS = E2E_DIR / "artifacts"
NOTES_KEY = pytest.StashKey[list[str]]()

expect.set_options(timeout=10_000)

# Run by `manage.py shell -c` with the server's environment: a room full of history in a second, not via the UI.
STORE_MESSAGES = """
import json
from accounts.models import User
from chat.models import Message, Room
args = json.loads({args!r})
author = User.objects.get(username=args["author"])
room = Room.objects.create(name=args["room"])
Message.objects.bulk_create(Message(room=room, author=author, body=body) for body in args["bodies"])
print(Message.objects.filter(room=room).count())
"""


def server_env(database: Path) -> dict[str, str]:
    """The environment of a production-like server (DEBUG off) on its own SQLite file, in-memory channel layer."""
    return {
        "DATABASE_URL": f"sqlite:///{database}",
        # Uploaded files beside the database, not in the project's own media folder.
        "MEDIA_ROOT": str(database.parent / "media"),
        "SECRET_KEY": "e2e",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ACCOUNT_RATE_LIMITS": "off",
        "REDIS_URL": "",
        # The heartbeat also removes connections whose consumer ended without leaving (every 20 s by default):
        # a backstop that, within a test, would hide a broken leave about three times in four. Tests here see
        # presence through joins and leaves only; no process dies, and none runs near an hour.
        "CHAT_PRESENCE_HEARTBEAT": "3600",
        "CHAT_PRESENCE_TIMEOUT": "7200",
    }


def note(config: pytest.Config, text: str) -> None:
    """Keep a line for the end-of-run summary."""
    config.stash.setdefault(NOTES_KEY, []).append(text)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip, never pass, every end-to-end test when there is no Chromium to drive."""
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=CHROMIUM_MISSING)
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the item, so fixture teardown knows whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    notes = config.stash.get(NOTES_KEY, [])
    if notes:
        terminalreporter.section("e2e notes")
        for line in notes:
            terminalreporter.write_line(line)


@dataclass
class ChatServer:
    """A daphne serving the app on a fixed port and database, which a test may restart in place."""

    env: dict[str, str]
    log_path: Path
    server: DaphneServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = DaphneServer(self.env, log_path=self.log_path)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> ChatServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def manage_shell(self, code: str) -> str:
        """Run Python in `manage.py shell` on this server's database (fixtures made fast, not through the UI)."""
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
            cwd=BASE_DIR,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py shell failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def store_messages(self, *, room: str, author: str, bodies: list[str]) -> None:
        """Create a room with these messages (oldest first) by a signed-up user, straight in the database."""
        args = json.dumps({"room": room, "author": author, "bodies": bodies})
        stored = self.manage_shell(STORE_MESSAGES.format(args=args)).strip()
        assert stored == str(len(bodies)), f"stored {stored!r} messages in {room}, wanted {len(bodies)}"

    def restart(self) -> None:
        """Stop with SIGTERM, then start a new process on the same port and database."""
        port = self.server.port
        self.server.stop()
        self.server = DaphneServer(self.env, port=port, log_path=self.log_path)
        self.server.start()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def static_broken(server: ChatServer) -> str | None:
    """Why a public page or its static files fail with DEBUG off, or None when they work."""
    login = f"{server.url}/accounts/login/"
    try:
        with urllib.request.urlopen(login, timeout=10) as response:
            html = response.read().decode()
    except urllib.error.HTTPError as error:
        return f"GET /accounts/login/ answered {error.code}"
    urls = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(/static/[^"]+)"', html)
    if not urls:
        return "the login page links no /static/ file"
    for path in urls:
        status = http_status(f"{server.url}{path}")
        if status != 200:
            return f"GET {path} answered {status}"
    return None


def collectstatic(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        check=True,
    )


def start_server(directory: Path, config: pytest.Config) -> ChatServer:
    """Migrate a fresh database and start daphne on it, collecting static files if DEBUG off needs them."""
    env = server_env(directory / "db.sqlite3")
    migrate(env)
    server = ChatServer(env=env, log_path=directory / "daphne.log").start()
    problem = static_broken(server)
    if problem is not None:
        note(config, f"with DEBUG off and no collectstatic: {problem}; ran `manage.py collectstatic` (STATIC_ROOT)")
        collectstatic(env)
        server.restart()
        problem = static_broken(server)
        if problem is not None:
            server.stop()
            pytest.fail(f"static files are broken with DEBUG off even after collectstatic: {problem}")
    return server


@pytest.fixture(scope="package")
def chat_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ChatServer]:
    """The server shared by the package's tests (its own SQLite file; tests use unique user and room names)."""
    server = start_server(tmp_path_factory.mktemp("e2e-server"), request.config)
    yield server
    server.stop()


@pytest.fixture
def restartable_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ChatServer]:
    """A server of this test alone, which it may restart on the same port and database."""
    server = start_server(tmp_path, request.config)
    yield server
    server.stop()


# Package scope, not session: Playwright's sync API keeps an event loop running in this thread until it stops,
# and pytest-asyncio tests collected after this package would fail with "another loop is running".
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, skipping when there is no Chromium."""
    if not CHROMIUM.exists():
        pytest.skip(CHROMIUM_MISSING)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Browsing:
    """The users (browser contexts) of one test; saves what every open page shows when the test fails."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.users: list[ChatUser] = []
        self.servers: list[ChatServer] = []

    def user(self, prefix: str, server: ChatServer, device: dict | None = None) -> ChatUser:
        """A new user, signed up (and so logged in) through the signup form's POST, in a new context (of a device
        of harness.py, e.g. PHONE; the 1200x800 window by default)."""
        context = new_context(self.browser, server.url, device)
        user = ChatUser(username=unique_name(prefix), password=new_password(), context=context)
        self.users.append(user)
        if server not in self.servers:
            self.servers.append(server)
        sign_up_by_request(context, user.username, user.password)
        return user

    def anonymous(self, prefix: str, server: ChatServer, device: dict | None = None) -> ChatUser:
        """A new context nobody is logged in to, with a fresh name and password for a signup by hand."""
        user = ChatUser(
            username=unique_name(prefix),
            password=new_password(),
            context=new_context(self.browser, server.url, device),
        )
        self.users.append(user)
        if server not in self.servers:
            self.servers.append(server)
        return user

    def save_artifacts(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for user in self.users:
            for index, page in enumerate(user.context.pages):
                stem = directory / f"{user.username}-tab{index}"
                try:
                    page.screenshot(path=f"{stem}.png", full_page=True, timeout=5_000)
                    stem.with_suffix(".html").write_text(f"<!-- {page.url} -->\n{page.content()}")
                except Exception as error:  # a crashed page must not hide the other pages
                    stem.with_suffix(".txt").write_text(f"could not save {page.url}: {error}\n")
            (directory / f"{user.username}-console.txt").write_text(
                "\n".join(user.console + [f"dialog {d}" for d in user.dialogs]) + "\n"
            )
        for index, server in enumerate(self.servers):
            if server.log_path.exists():
                shutil.copyfile(server.log_path, directory / f"daphne-{index}.log")

    def close(self) -> None:
        for user in self.users:
            with contextlib.suppress(Exception):  # the browser may be gone already
                user.context.close()


@pytest.fixture
def browsing(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Browsing]:
    """The test's browser contexts; on failure their pages go to tests/e2e/artifacts/<test-name>/."""
    browsing = Browsing(browser)
    yield browsing
    item = request.node
    failed = [r for r in (getattr(item, "rep_setup", None), getattr(item, "rep_call", None)) if r and r.failed]
    if failed:
        directory = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)
        browsing.save_artifacts(directory)
        message = f"e2e artifacts of {item.nodeid}: {directory}"
        failed[-1].sections.append(("e2e artifacts", message))
        note(request.config, message)
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\n{message}")
    browsing.close()


@pytest.fixture
def new_user(browsing: Browsing, chat_server: ChatServer) -> Callable[..., ChatUser]:
    """New logged-in users on the session's server: new_user("alice") -> alice, alice2, ...; on a phone with
    new_user("alice", device=PHONE)."""

    def make(prefix: str, device: dict | None = None) -> ChatUser:
        return browsing.user(prefix, chat_server, device)

    return make


@pytest.fixture
def new_room() -> Callable[[str], str]:
    """Room names that no other test of the session uses."""

    def make(prefix: str = "room") -> str:
        return unique_name(prefix)

    return make
