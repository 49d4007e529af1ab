"""The live room directory: a new room appears, its online count rises and falls, its last activity updates."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import DIRECTORY_SOCKET_PATH, LIVE_MS, ChatUser, DirectoryTab

pytestmark = pytest.mark.e2e


def test_when_others_open_and_use_a_new_room_then_an_open_directory_follows_without_reloading(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Carol's directory: Alice's new room appears, its count goes 1, 2, 1, and its last message time shows."""
    room = new_room("Fresh")
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    directory = carol.open_live_directory()
    row = directory.row(room)
    expect(row).to_have_count(0)
    # Anything that reloads the page would open a new directory socket: the test checks none is opened.
    sockets = len(directory.watch.sockets)

    alice_tab = alice.open_room(room)
    expect(row).to_be_visible(timeout=LIVE_MS)
    expect(row.get_by_role("link", name=f"#{room}")).to_have_attribute("href", f"/chat/{room}/#unread-divider")
    pk = directory.room_pk(room)
    count = row.locator(f"#online-{pk}")
    expect(count).to_have_text("1", timeout=LIVE_MS)
    activity = row.locator(f"#activity-{pk}")
    expect(activity).not_to_contain_text("last message")

    bob_tab = bob.open_room(room)
    expect(count).to_have_text("2", timeout=LIVE_MS)

    bob_tab.close()
    expect(count).to_have_text("1", timeout=LIVE_MS)

    alice_tab.send("First!")
    expect(alice_tab.message("First!")).to_be_visible(timeout=LIVE_MS)
    expect(activity).to_contain_text("last message", timeout=LIVE_MS)
    expect(activity.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))

    alice_tab.close()
    expect(count).to_have_text("0", timeout=LIVE_MS)
    expect(directory.row(room)).to_have_count(1)
    assert len(directory.watch.sockets) == sockets, "the directory reloaded or reconnected"


def test_when_a_search_finds_no_room_then_the_live_list_keeps_saying_so(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """/chat/?q=<nothing that matches>: once the directory's socket has sent its list, and after a room is made
    elsewhere, the list still says that no room's name contains the search, not "No rooms yet"."""
    room = new_room("lively")
    alice, carol = new_user("alice"), new_user("carol")
    page, watch = carol.new_page(DIRECTORY_SOCKET_PATH)
    page.goto("/chat/?q=zebra-crossing")
    directory = DirectoryTab(user=carol, page=page, watch=watch)
    directory.wait_connected()
    empty = page.locator("#room-list .empty")
    expect(empty).to_have_text("No public room's name contains “zebra-crossing”.")
    alice.open_room(room).post("a room that does not match")
    page.wait_for_timeout(1_500)  # the directories hear of the message within a second
    expect(empty).to_be_visible()
    expect(empty).to_have_text("No public room's name contains “zebra-crossing”.")
    expect(page.locator("#room-list .room-row")).to_have_count(0)
