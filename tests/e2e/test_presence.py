"""Who is online in a room: joining, leaving by closing the tab, and two tabs of one user."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, expect

from tests.e2e.harness import LIVE_MS, ChatUser

pytestmark = pytest.mark.e2e


def expect_stays_visible(locator: Locator, seconds: float) -> None:
    """Check, over a window, that something stays on screen (a negative that no single wait can prove)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        expect(locator).to_be_visible(timeout=100)
        locator.page.wait_for_timeout(100)


def test_when_two_users_open_a_room_then_both_are_listed_online_for_both(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Each room page lists both users once they are connected."""
    room = new_room("presence")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)

    for tab in (alice_tab, bob_tab):
        expect(tab.online_user(alice.username)).to_be_visible(timeout=LIVE_MS)
        expect(tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)
        expect(tab.online_users.locator("li")).to_have_count(2)


def test_when_bob_closes_his_tab_then_he_disappears_from_alices_list(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Closing the only tab takes the user off everyone's online list."""
    room = new_room("presence")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)

    bob_tab.close()

    expect(alice_tab.online_user(bob.username)).to_have_count(0, timeout=LIVE_MS)
    expect(alice_tab.online_user(alice.username)).to_be_visible()


def test_when_a_user_with_two_tabs_closes_one_then_she_stays_listed(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Presence counts connections: one tab closed of two leaves the user online for the others and herself."""
    room = new_room("presence")
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    alice_first, bob_tab = alice.open_room(room), bob.open_room(room)
    alice_second = alice.open_room(room)
    expect(bob_tab.online_user(alice.username)).to_have_count(1)

    alice_second.close()
    # Carol's arrival is a later presence change: once Bob sees it, Alice's tab closing has been handled too.
    carol.open_room(room)
    expect(bob_tab.online_user(carol.username)).to_be_visible(timeout=LIVE_MS)

    expect_stays_visible(bob_tab.online_user(alice.username), seconds=2)
    expect(alice_first.online_user(alice.username)).to_be_visible()
    alice_first.send("still here")
    expect(bob_tab.message("still here")).to_be_visible(timeout=LIVE_MS)

    alice_first.close()
    expect(bob_tab.online_user(alice.username)).to_have_count(0, timeout=LIVE_MS)
