"""Mentions: "@name" of an existing user shows as a mention, and the message stands out for that user only."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, expect

from tests.e2e.harness import LIVE_MS, ChatUser, Tab

pytestmark = pytest.mark.e2e

TRANSPARENT = "rgba(0, 0, 0, 0)"
MENTION_BACKGROUND = "rgb(238, 243, 255)"  # --mention in static/css/chat.css
ACCENT = "rgb(49, 87, 213)"  # --accent


def expect_highlighted(message: Locator) -> None:
    expect(message).to_have_css("background-color", MENTION_BACKGROUND)
    expect(message).to_have_css("border-left-color", ACCENT)
    expect(message).to_have_css("border-left-width", "3px")


def expect_plain(message: Locator) -> None:
    expect(message).to_have_css("background-color", TRANSPARENT)
    expect(message).to_have_css("border-left-width", "0px")


def test_when_alice_mentions_bob_then_only_bobs_page_highlights_the_message(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """ "hi @bob": "@bob" is a mention everywhere; Bob's page (live and reloaded) sets the message apart from an
    ordinary one, Alice's and Carol's do not; "@nobody" (no such user) stays plain text."""
    room = new_room("mentions")
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    tabs = alice_tab, bob_tab, carol_tab = alice.open_room(room), bob.open_room(room), carol.open_room(room)
    expect(alice_tab.online_users.locator("li")).to_have_count(3, timeout=LIVE_MS)
    bob_pk = alice_tab.user_pk(bob.username)

    alice_tab.post("just saying hello")
    text = f"hi @{bob.username}, ask @nobody"
    alice_tab.post(text)
    for tab in tabs:
        mention = tab.message(text)
        expect(mention).to_have_count(1, timeout=LIVE_MS)
        expect(mention).to_have_class(re.compile(rf"\bmentions-u{bob_pk}\b"))
        expect(mention.locator("span.mention")).to_have_text([f"@{bob.username}"])
        expect_plain(tab.message("just saying hello"))

    expect_highlighted(bob_tab.message(text))
    expect_plain(alice_tab.message(text))
    expect_plain(carol_tab.message(text))

    bob_tab.page.reload()
    bob_tab.wait_connected(after=bob_tab.sockets_opened())
    expect_highlighted(bob_tab.message(text))
    expect_plain(bob_tab.message("just saying hello"))


def test_when_a_message_mentions_nobody_who_exists_then_no_page_highlights_it(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """An e-mail address and an unknown @name are text: no mention span, no highlight."""
    room = new_room("mentions")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    text = f"write to {bob.username}@example.com or @{bob.username}zzz"
    alice_tab.post(text)
    tab: Tab
    for tab in (alice_tab, bob_tab):
        expect(tab.message(text)).to_have_count(1, timeout=LIVE_MS)
        expect(tab.message(text).locator("span.mention")).to_have_count(0)
        expect_plain(tab.message(text))
