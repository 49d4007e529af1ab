"""The typing indicator: others see "<name> is typing…" under the log while someone types; it goes after."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import LIVE_MS, ChatUser, Tab

pytestmark = pytest.mark.e2e

# The notice fades 5 s after it arrives (static/css/chat.css, typing-fade), plus slack for a loaded machine.
FADE_MS = 9_000


def type_slowly(tab: Tab, text: str) -> None:
    """Type into the message box key by key, as a person does (every key an `input` event)."""
    tab.message_input.click()
    tab.page.keyboard.type(text, delay=150)


def test_when_alice_types_then_bob_sees_her_typing_notice_until_she_sends_or_stops(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Bob sees "alice is typing…" within seconds, Alice never sees her own; sending removes it, and after she
    stops typing it fades by itself."""
    room = new_room("typing")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)
    alice_notice = bob_tab.typing_notice(alice.username)
    expect(alice_notice).to_have_count(0)

    type_slowly(alice_tab, "Just a sec, writing")
    expect(alice_notice).to_be_visible(timeout=LIVE_MS)
    expect(bob_tab.typing).to_have_text(f"{alice.username} is typing…")

    # Bob types too: once Alice sees his notice, hers (sent earlier to the same room) would have arrived as well.
    type_slowly(bob_tab, "ok")
    expect(alice_tab.typing_notice(bob.username)).to_be_visible(timeout=LIVE_MS)
    expect(alice_tab.typing_notice(alice.username)).to_have_count(0)

    alice_tab.message_input.press("Enter")
    expect(bob_tab.message("Just a sec, writing")).to_be_visible(timeout=LIVE_MS)
    expect(alice_notice).to_have_count(0)
    expect(alice_tab.typing_notice(alice.username)).to_have_count(0)

    type_slowly(alice_tab, "and one more")
    expect(alice_notice).to_be_visible(timeout=LIVE_MS)
    # She stops typing (nothing is sent): the notice fades by itself, though it stays in the DOM.
    expect(alice_notice).to_be_hidden(timeout=FADE_MS)
    expect(bob_tab.message("and one more")).to_have_count(0)
    expect(alice_tab.message_input).to_have_value("and one more")
