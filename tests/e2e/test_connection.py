"""The page shows its connection: live while the server renews it, "Reconnecting…" once it stops, live again when
the server is back; a page whose session ended says so, with a way to log in again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Browsing, ChatServer, ChatUser
from tests.e2e.harness import LIVE_MS, RECONNECT_AFTER_OUTAGE_MS
from tests.e2e.test_chat import SCREENSHOTS

pytestmark = pytest.mark.e2e

# The stylesheet turns a state not renewed for 25 s into "Reconnecting…" (static/css/chat.css, `.connection`).
STALE_MS = 25_000


def test_when_the_server_stops_the_page_says_it_is_reconnecting_and_live_again_once_it_is_back(
    browsing: Browsing, restartable_server: ChatServer, new_room: Callable[[str], str]
) -> None:
    server = restartable_server
    alice = browsing.user("alice", server)
    tab = alice.open_room(new_room("flaky"))
    connection = tab.page.locator("#connection")
    expect(connection.get_by_text("Live", exact=True)).to_be_visible(timeout=LIVE_MS)
    expect(connection.get_by_text("Reconnecting…")).to_be_hidden()
    opened = tab.sockets_opened()

    server.stop()
    expect(connection.get_by_text("Reconnecting…")).to_be_visible(timeout=STALE_MS + 10_000)
    expect(connection.get_by_text("Live", exact=True)).to_be_hidden()
    tab.page.screenshot(path=str(SCREENSHOTS / "connection-reconnecting.png"))

    server.start()
    tab.wait_connected(timeout_ms=RECONNECT_AFTER_OUTAGE_MS, after=opened)
    expect(connection.get_by_text("Live", exact=True)).to_be_visible(timeout=LIVE_MS)
    expect(connection.get_by_text("Reconnecting…")).to_be_hidden()


def test_a_page_whose_session_ended_in_another_tab_says_so_and_links_to_the_login(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    carol = new_user("carol")
    room = new_room("signed-out")
    tab = carol.open_room(room)
    expect(tab.page.locator("#connection").get_by_text("Live", exact=True)).to_be_visible(timeout=LIVE_MS)

    page, _watch = carol.new_page()
    page.goto("/chat/")
    page.get_by_role("button", name="Log out").click()

    notice = tab.page.locator("#connection")
    expect(notice).to_contain_text("You were signed out", timeout=LIVE_MS)
    link = notice.get_by_role("link", name="Log in again")
    expect(link).to_have_attribute("href", f"/accounts/login/?next=/chat/{room}/")
