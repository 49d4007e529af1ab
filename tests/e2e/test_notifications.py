"""Notification levels and the unread count in the page title: live, with no reload and no script of our own."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.harness import LIVE_MS, ChatUser

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def sidebar_entry(page: Page, *, room: str | None = None, user: str | None = None):
    key = f'data-room="{room.lower()}"' if room else f'data-user="{user.lower()}"'
    return page.locator(f"#sidebar li[{key}]")


def test_the_title_counts_what_notifies_nina_live_and_muting_a_room_silences_it(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Nina's directory tab: a plain message in a room she is in counts in its sidebar badge but not in the title
    (rooms notify of mentions); a mention and a direct message do, "(1) " then "(2) "; opening the direct
    conversation in another tab takes it off the first tab's title; muting the room takes the rest."""
    room = new_room("launch")
    nina, omar = new_user("nina"), new_user("omar")
    nina.open_room(room).close()
    omar_tab = omar.open_room(room)
    directory = nina.open_live_directory()
    page = directory.page
    expect(page).to_have_title("Rooms · Chat")

    omar_tab.post("the countdown starts at noon")
    expect(sidebar_entry(page, room=room).locator(".unread")).to_have_text("1", timeout=LIVE_MS)
    expect(page).to_have_title("Rooms · Chat")

    omar_tab.post(f"@{nina.username} can you press the button?")
    expect(page).to_have_title("(1) Rooms · Chat", timeout=LIVE_MS)
    expect(sidebar_entry(page, room=room).locator(".mentioned")).to_be_visible()

    omar_tab.send(f"/pm {nina.username} and bring the cake")
    expect(page).to_have_title("(2) Rooms · Chat", timeout=LIVE_MS)
    expect(sidebar_entry(page, user=omar.username).locator(".unread")).to_have_text("1")

    # A room page's title counts the same way, without its own conversation (it is being read); reading the room
    # there takes it off the directory's title and badge, live.
    room_tab = nina.open_room(room)
    expect(room_tab.page).to_have_title(f"(1) #{room} · Chat", timeout=LIVE_MS)
    expect(page).to_have_title("(1) Rooms · Chat", timeout=LIVE_MS)
    expect(sidebar_entry(page, room=room).locator(".unread")).to_have_count(0)
    room_tab.close()

    # Reading the direct conversation in another tab: the directory's title drops it too.
    dm_page, _ = nina.new_page()
    dm_page.goto(f"/dm/{omar.username}/")
    expect(dm_page.locator(".message-body", has_text="and bring the cake")).to_be_visible()
    expect(page).to_have_title("Rooms · Chat", timeout=LIVE_MS)
    expect(sidebar_entry(page, user=omar.username).locator(".unread")).to_have_count(0)
    dm_page.close()

    omar_tab.post(f"@{nina.username} one more thing")
    expect(page).to_have_title("(1) Rooms · Chat", timeout=LIVE_MS)

    # Muting the room on its notifications page: its entry is muted everywhere, and the title counts nothing.
    settings, _ = nina.new_page()
    settings.goto(f"/chat/{room}/notifications/")
    expect(settings.locator('input[name="level"][value="mentions"]')).to_be_checked()
    settings.locator('input[name="level"][value="nothing"]').check()
    settings.get_by_role("button", name="Save").click()
    expect(settings.locator('input[name="level"][value="nothing"]')).to_be_checked()
    expect(sidebar_entry(settings, room=room)).to_have_class(re.compile(r"\bmuted\b"))
    settings.screenshot(path=SCREENSHOTS / "notifications-level.png")
    expect(page).to_have_title("Rooms · Chat", timeout=LIVE_MS)
    entry = sidebar_entry(page, room=room)
    expect(entry).to_have_class(re.compile(r"\bmuted\b"), timeout=LIVE_MS)
    expect(entry.locator(".unread")).to_have_count(0)
    expect(entry.locator(".mentioned")).to_have_count(0)

    # Muted, a new mention changes nothing anywhere.
    omar_tab.post(f"@{nina.username} still there?")
    omar_tab.post("last call")
    expect(page).to_have_title("Rooms · Chat")
    expect(entry.locator(".unread")).to_have_count(0)
    assert not [line for line in nina.console if line.startswith(("error", "pageerror"))], nina.console
