"""Searching a room from its header, and opening a result in its place in the history."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import LIVE_MS, ChatUser, Tab

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TARGET_BACKGROUND = "rgb(232, 238, 252)"  # .context-log .is-target .message in static/css/chat.css


def test_when_leo_searches_a_room_then_he_finds_the_message_and_opens_it_in_context(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Words typed in the header's search box find the messages holding them all; a result opens in the
    history with the message highlighted among its neighbours, and a link leads back to the live room."""
    room = new_room("zoo")
    iris, leo = new_user("iris"), new_user("leo")
    iris_tab = iris.open_room(room)
    for text in ("the keeper is late today", "the purple elephant dances at noon", "a green elephant sleeps"):
        iris_tab.post(text)
    iris_tab.post("feeding time is over")
    leo_tab = leo.open_room(room)

    search = leo_tab.page.locator(".room-header").get_by_role("searchbox", name=f"Search #{room}")
    expect(search).to_have_attribute("name", "q")
    search.fill("elephant")
    search.press("Enter")
    page = leo_tab.page
    expect(page).to_have_url(re.compile(rf"/chat/{room}/search/\?q=elephant$"))
    results = page.locator("#search-results > li")
    expect(page.get_by_role("status")).to_have_text("2 messages found for “elephant”.")
    expect(results.locator(".message-body")).to_have_text(
        ["a green elephant sleeps", "the purple elephant dances at noon"]
    )
    expect(results.locator(".message-author")).to_have_text([iris.username, iris.username])
    # Valid HTML: each result's link sits beside the message, not around its buttons; times are whole seconds.
    expect(results.locator("a button, a a")).to_have_count(0)
    expect(results.get_by_role("link", name="Show in the conversation")).to_have_count(2)
    for stamp in results.locator("time").evaluate_all("times => times.map(t => t.getAttribute('datetime'))"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:?\d\d)", stamp), stamp
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "features-search.png"))

    search = page.get_by_role("searchbox")
    expect(search).to_have_value("elephant")
    search.fill("Elephant PURPLE")
    search.press("Enter")
    expect(page).to_have_url(re.compile(rf"\?q={re.escape(quote_plus('Elephant PURPLE'))}$"))
    expect(results).to_have_count(1)
    expect(results.locator(".message-body")).to_have_text("the purple elephant dances at noon")

    results.first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/chat/{room}/messages/(\d+)/#message-\1$"))
    context = page.locator("#message-context")
    expect(context.locator("article.message .message-body")).to_have_text(
        [
            "the keeper is late today",
            "the purple elephant dances at noon",
            "a green elephant sleeps",
            "feeding time is over",
        ]
    )
    target = context.locator(".is-target article.message")
    expect(target).to_have_count(1)
    expect(target.locator(".message-body")).to_have_text("the purple elephant dances at noon")
    expect(target).to_have_css("background-color", TARGET_BACKGROUND)
    expect(target).to_be_in_viewport()
    fragment = page.evaluate("location.hash")
    expect(target).to_have_attribute("id", fragment.removeprefix("#"))

    opened = leo_tab.sockets_opened()
    page.get_by_role("link", name="Back to the live room").click()
    expect(page).to_have_url(re.compile(rf"/chat/{room}/$"))
    live = Tab(user=leo, page=page, room=room, watch=leo_tab.watch)
    live.wait_connected(after=opened)
    iris_tab.post("back to live")
    expect(live.message("back to live")).to_be_visible(timeout=LIVE_MS)
