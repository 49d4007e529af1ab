"""Two people chatting in a room: live delivery, the cleared input, authorship, and no HTML from users."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import LIVE_MS, ChatUser, Tab

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def expect_message(tab: Tab, body: str, author: str) -> None:
    """The tab's log shows the message once, with its author and a time."""
    message = tab.message(body)
    expect(message).to_have_count(1, timeout=LIVE_MS)
    expect(message.locator(".message-author")).to_have_text(author)
    expect(message.locator("time")).to_have_count(1)


def test_when_alice_sends_then_bob_sees_it_live_with_her_name(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """A message appears in both logs within seconds, shows its author, and the sender's input is cleared."""
    room = new_room("general")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)

    alice_tab.send("Hello Bob, are you there?")
    expect_message(alice_tab, "Hello Bob, are you there?", alice.username)
    expect_message(bob_tab, "Hello Bob, are you there?", alice.username)
    expect(alice_tab.message_input).to_have_value("")

    bob_tab.send("Yes! Reading you live.")
    expect_message(bob_tab, "Yes! Reading you live.", bob.username)
    expect_message(alice_tab, "Yes! Reading you live.", bob.username)
    expect(bob_tab.message_input).to_have_value("")

    alice_tab.send("Great, the socket works.")
    expect_message(bob_tab, "Great, the socket works.", alice.username)
    bodies = bob_tab.messages.locator(".message-body")
    expect(bodies).to_have_text(["Hello Bob, are you there?", "Yes! Reading you live.", "Great, the socket works."])
    expect(alice_tab.error).to_have_text("")

    save_screenshots(alice_tab, alice)


def save_screenshots(tab: Tab, user: ChatUser) -> None:
    """docs/screenshots/room.png and directory.png, at the 1200x800 viewport of every context."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / "room.png"))
    directory = user.open_directory()
    expect(directory.locator(f"#room-{tab.room.lower()}")).to_be_visible()
    directory.screenshot(path=str(SCREENSHOTS / "directory.png"))


def test_when_a_message_is_typed_as_html_then_everyone_sees_it_as_text(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Markup typed by a user shows literally, creates no element and runs no script, live and after a reload."""
    room = new_room("markup")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    image, bold = "<img src=x onerror=alert(1)>", "<b>x</b>"

    # post(): the second message is typed only once the fresh form is back (typed earlier, the form replaces it).
    alice_tab.post(image)
    expect_message(alice_tab, image, alice.username)
    alice_tab.send(bold)
    for tab in (alice_tab, bob_tab):
        expect_message(tab, image, alice.username)
        expect_message(tab, bold, alice.username)
        expect(tab.messages.locator("img")).to_have_count(0)
        expect(tab.messages.locator("b")).to_have_count(0)
        expect(tab.message(bold)).to_be_visible()

    bob_tab.page.reload()
    bob_tab.wait_connected(after=bob_tab.sockets_opened())
    expect(bob_tab.message(image)).to_be_visible()
    expect(bob_tab.message(bold)).to_be_visible()
    expect(bob_tab.messages.locator("img")).to_have_count(0)
    expect(bob_tab.messages.locator("b")).to_have_count(0)
    assert alice.dialogs == [], "a user's message ran a script"
    assert bob.dialogs == [], "a user's message ran a script"
