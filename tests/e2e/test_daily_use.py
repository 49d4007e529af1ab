"""Daily use at a desktop (1280x800): a mistyped command reaches nobody, the log names its days, and Edit and Delete
go once a message's edit window has passed, with a late attempt answered in the error line."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ChatServer
from tests.e2e.harness import LIVE_MS, ChatUser

pytestmark = pytest.mark.e2e

AGE_MESSAGE = """
from datetime import timedelta
from django.utils import timezone
from chat.models import Message
Message.objects.filter(body={body!r}).update(created_at=timezone.now() - timedelta(minutes={minutes}))
"""


def test_a_mistyped_private_message_is_refused_kept_in_the_box_and_seen_by_nobody(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    room = new_room("typo")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)

    alice_tab.send(f"/pn {bob.username} the secret plan")

    expect(alice_tab.error).to_contain_text("There is no command /pn", timeout=LIVE_MS)
    expect(alice_tab.error).to_contain_text("/pm <username> <text>")
    expect(alice_tab.message_input).to_have_value(f"/pn {bob.username} the secret plan")
    alice_tab.page.wait_for_timeout(1_000)
    expect(bob_tab.messages).not_to_contain_text("secret plan")

    alice_tab.message_input.fill("//pn is how not to type it")
    alice_tab.message_input.press("Enter")
    expect(bob_tab.message("/pn is how not to type it")).to_have_count(1, timeout=LIVE_MS)
    expect(alice_tab.error).to_have_text("")


def test_the_log_names_the_day_and_a_message_past_its_window_loses_edit_and_delete(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    room = new_room("window")
    alice = new_user("alice")
    tab = alice.open_room(room)
    tab.post("written a while ago")
    tab.post("written just now")
    expect(tab.messages.locator(".day-separator")).to_have_text("Today")

    fresh = tab.message("written just now")
    fresh.hover()
    expect(fresh.get_by_role("button", name="Edit")).to_be_visible()

    chat_server.manage_shell(AGE_MESSAGE.format(body="written a while ago", minutes=20))
    tab.post("and one more")  # published like any message: the server renders the room's log afresh
    opened = tab.sockets_opened()
    tab.page.reload()
    tab.wait_connected(after=opened)
    old = tab.message("written a while ago")
    old.hover()
    expect(old.get_by_role("button", name="Edit")).to_be_hidden()
    expect(old.get_by_role("button", name="Delete")).to_be_hidden()

    # A page that still offers the links (opened before the window passed) gets the refusal in its error line.
    old.locator(".own-actions button", has_text="Edit").dispatch_event("click")
    expect(tab.error).to_have_text("Messages can be changed for 15 minutes after sending.", timeout=LIVE_MS)
    expect(tab.message("written a while ago")).to_have_count(1)
