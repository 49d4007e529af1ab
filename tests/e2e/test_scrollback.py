"""Scroll-back: a long room opens with its newest 50 messages and loads older pages as the reader scrolls up."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, expect

from tests.e2e.conftest import ChatServer
from tests.e2e.harness import ChatUser, Tab

pytestmark = pytest.mark.e2e

PAGE = 50  # docs/contract.md: the page shows the newest 50 messages
TOTAL = 120  # the newest 50, then 50 older, then the first 20 and the beginning of the room


def scroll_up_until_more_load(tab: Tab, articles: Locator, shown: int, max_steps: int = 80) -> int:
    """Turn the mouse wheel up over the log, a few lines at a time as a reader does, until more messages show.

    Small steps, not a jump to the top: the marker loads the previous page when it enters the view, and an
    instant jump past it would never show it. Returns how many messages show then.
    """
    box = tab.page.locator(".log").bounding_box()
    assert box is not None, "the log is not rendered"
    height = (tab.page.viewport_size or {"height": 800})["height"]
    # Over the middle of the log's visible part: the wheel scrolls the box under the pointer, or the page around it.
    top, bottom = max(box["y"], 0), min(box["y"] + box["height"], height)
    tab.page.mouse.move(box["x"] + box["width"] / 2, (top + bottom) / 2)
    for _step in range(max_steps):
        tab.page.mouse.wheel(0, -400)
        try:
            expect(articles).not_to_have_count(shown, timeout=250)
        except AssertionError:
            continue
        return articles.count()
    raise AssertionError(f"scrolling up {max_steps} times loaded nothing older than the {shown} messages shown")


def test_when_a_reader_scrolls_up_a_long_room_then_older_pages_load_until_its_beginning_without_repeats(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    """120 stored messages: the newest 50 show first; scrolling up loads 50, then 20 and "the beginning"."""
    room = new_room("archive")
    author, reader = new_user("alice"), new_user("bob")
    bodies = [f"scroll-back {n:03d}" for n in range(1, TOTAL + 1)]
    chat_server.store_messages(room=room, author=author.username, bodies=bodies)

    tab = reader.open_room(room)
    articles = tab.messages.locator("article.message")
    expect(articles).to_have_count(PAGE)
    expect(articles.locator(".message-body")).to_have_text(bodies[-PAGE:])
    expect(tab.message(bodies[-1])).to_be_in_viewport()
    expect(tab.message(bodies[-1]).locator(".message-author")).to_have_text(author.username)
    beginning = tab.messages.locator(".log-start", has_text=f"This is the beginning of #{room}.")
    expect(beginning).to_have_count(0)

    shown = PAGE
    for _page in range(TOTAL // PAGE + 2):
        if shown == TOTAL:
            break
        shown = scroll_up_until_more_load(tab, articles, shown)
        assert shown <= TOTAL, f"{shown} messages shown of {TOTAL} stored"
    expect(articles).to_have_count(TOTAL)
    expect(beginning).to_be_visible()
    expect(tab.messages.locator(".log-start")).to_have_count(1)

    expect(articles.locator(".message-body")).to_have_text(bodies)
    ids = articles.evaluate_all("articles => articles.map(a => a.id)")
    assert len(set(ids)) == TOTAL, "a message appears twice"
    assert all(re.fullmatch(r"message-\d+", i) for i in ids), ids
    assert ids == sorted(ids, key=lambda i: int(i.removeprefix("message-"))), "the log is out of order"
