"""The room page of a busy room: the log scrolls in its own box, and each message shows once, in the log."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ChatServer
from tests.e2e.harness import ChatUser

pytestmark = pytest.mark.e2e

BODIES = [f"layout line {n:02d}" for n in range(1, 41)]  # more than fit, fewer than a page of 50


def test_when_a_room_has_more_messages_than_fit_then_only_the_log_scrolls(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    """40 messages at 1200x800: the page fits the window, the log scrolls, title and message box stay in view."""
    room = new_room("busy")
    author, reader = new_user("alice"), new_user("bob")
    chat_server.store_messages(room=room, author=author.username, bodies=BODIES)
    tab = reader.open_room(room)
    expect(tab.messages.locator("article.message")).to_have_count(len(BODIES))

    log = tab.page.locator(".log")
    assert log.evaluate("log => log.scrollHeight > log.clientHeight"), "the log is not a scrolling box"
    page_height, window_height = tab.page.evaluate("() => [document.documentElement.scrollHeight, window.innerHeight]")
    assert page_height <= window_height + 1, f"the page is {page_height}px tall in a {window_height}px window"
    expect(tab.page.locator("#room-title")).to_be_in_viewport()
    expect(tab.message_input).to_be_in_viewport()
    expect(tab.message(BODIES[-1])).to_be_in_viewport()


def test_when_a_room_opens_with_history_then_each_message_shows_once_and_only_in_the_log(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    """Stored messages show in #messages, once each, and nowhere else on the page."""
    room = new_room("history")
    author, reader = new_user("alice"), new_user("bob")
    chat_server.store_messages(room=room, author=author.username, bodies=BODIES[:3])
    tab = reader.open_room(room)
    for body in BODIES[:3]:
        expect(tab.message(body)).to_have_count(1)
        expect(tab.page.get_by_text(body).filter(visible=True)).to_have_count(1)
