"""Private messages: by `/pm`, by clicking a name in the online list, and to nobody."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import LIVE_MS, ChatUser, Tab

pytestmark = pytest.mark.e2e


def expect_private(tab: Tab, body: str, author: str) -> None:
    """The tab shows the message once, marked private, with its author."""
    message = tab.message(body)
    expect(message).to_have_count(1, timeout=LIVE_MS)
    expect(message).to_have_class(re.compile(r"\bmessage--private\b"))
    expect(message).to_contain_text("private")
    expect(message.locator(".message-author")).to_have_text(author)


def expect_not_delivered(tab: Tab, body: str, later_public: str) -> None:
    """Once a public message sent after it has arrived, the private one is still not in this tab."""
    expect(tab.message(later_public)).to_be_visible(timeout=LIVE_MS)
    expect(tab.message(body)).to_have_count(0)
    expect(tab.messages).not_to_contain_text(body)


@pytest.fixture
def trio(new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]) -> tuple[Tab, Tab, Tab]:
    """Alice, Bob and Carol in one room, each seeing the other two online."""
    room = new_room("whisper")
    tabs = tuple(new_user(name).open_room(room) for name in ("alice", "bob", "carol"))
    for tab in tabs:
        for other in tabs:
            expect(tab.online_user(other.user.username)).to_be_visible(timeout=LIVE_MS)
    return tabs  # type: ignore[return-value]


def test_when_alice_types_pm_then_only_bob_and_alice_see_it(trio: tuple[Tab, Tab, Tab]) -> None:
    """`/pm bob text` reaches Bob, echoes to Alice, both marked private, and never reaches Carol."""
    alice_tab, bob_tab, carol_tab = trio
    bob = bob_tab.user.username

    alice_tab.send(f"/pm {bob} the cake is in the fridge")

    expect_private(bob_tab, "the cake is in the fridge", alice_tab.user.username)
    expect_private(alice_tab, "the cake is in the fridge", alice_tab.user.username)
    expect(alice_tab.message_input).to_have_value("")
    alice_tab.send("public after the whisper")
    expect_not_delivered(carol_tab, "the cake is in the fridge", "public after the whisper")


def test_when_alice_clicks_bobs_name_then_the_form_is_prefilled_and_the_pm_reaches_only_bob(
    trio: tuple[Tab, Tab, Tab],
) -> None:
    """Clicking a name in the online list prefills `/pm <name> `; finishing the line sends a private message."""
    alice_tab, bob_tab, carol_tab = trio
    bob = bob_tab.user.username

    alice_tab.online_user(bob).click()
    expect(alice_tab.message_input).to_have_value(f"/pm {bob} ")
    alice_tab.message_input.click()
    alice_tab.message_input.press("End")
    alice_tab.message_input.press_sequentially("meet me at noon")
    alice_tab.message_input.press("Enter")

    expect_private(bob_tab, "meet me at noon", alice_tab.user.username)
    expect_private(alice_tab, "meet me at noon", alice_tab.user.username)
    alice_tab.send("public after the click")
    expect_not_delivered(carol_tab, "meet me at noon", "public after the click")


def test_when_the_pm_target_does_not_exist_then_the_sender_sees_an_error(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """A private message to an unknown user is refused in #chat-error; the next good send clears it."""
    room = new_room("whisper")
    alice_tab = new_user("alice").open_room(room)

    alice_tab.send("/pm nobody-by-this-name hello?")

    expect(alice_tab.error).to_contain_text("nobody-by-this-name", timeout=LIVE_MS)
    expect(alice_tab.error).to_have_attribute("role", "alert")
    expect(alice_tab.messages).not_to_contain_text("hello?")
    alice_tab.send("hello room")
    expect(alice_tab.message("hello room")).to_be_visible(timeout=LIVE_MS)
    expect(alice_tab.error).to_have_text("")
