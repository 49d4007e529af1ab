"""Unread counts: rooms one has had open count what came since, live and after a reload, with mentions flagged."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect

from tests.e2e.conftest import Browsing, ChatServer
from tests.e2e.harness import LIVE_MS, ChatUser, DirectoryTab

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MENTION_BACKGROUND = "rgb(238, 243, 255)"  # --mention in static/css/chat.css


def unread_badge(directory: DirectoryTab, room: str) -> Locator:
    return directory.row(room).locator(".unread")


def expect_unread(badge: Locator, *, rendered: int, live: int) -> None:
    """The badge shows `rendered + live` new: the count the server rendered, plus one <i> per live message.

    The number itself is a CSS counter in `::after`, which no DOM text holds: its two inputs are checked instead.
    """
    expect(badge).to_be_visible(timeout=LIVE_MS)
    expect(badge).to_have_attribute("style", re.compile(rf"counter-reset:\s*unread {rendered}\b"))
    expect(badge.locator("i")).to_have_count(live, timeout=LIVE_MS)
    assert badge.evaluate("el => getComputedStyle(el, '::after').content") == 'counter(unread) " new"'


def test_when_others_post_in_rooms_nina_had_open_then_her_directory_counts_them_and_flags_her_mention(
    browsing: Browsing, restartable_server: ChatServer, new_room: Callable[[str], str]
) -> None:
    """Nina leaves three rooms for the directory; Omar posts in two: "2 new" (one mentions her) and "3 new",
    live and after a reload; opening the room shows "New since your last visit" above Omar's first message.

    A server of its own, so the directory in docs/screenshots/features-directory-unread.png holds these rooms only.
    """
    design, random, support = new_room("design"), new_room("random"), new_room("support")
    nina: ChatUser = browsing.user("nina", restartable_server)
    omar: ChatUser = browsing.user("omar", restartable_server)
    for room in (random, support):
        nina.open_room(room).close()
    nina_design = nina.open_room(design)
    omar_design, omar_random = omar.open_room(design), omar.open_room(random)
    expect(omar_design.online_user(nina.username)).to_be_visible(timeout=LIVE_MS)
    omar_design.post("Morning! The new build is on staging.")
    expect(nina_design.message("Morning! The new build is on staging.")).to_be_visible(timeout=LIVE_MS)

    directory = nina_design.leave_to_directory()
    # Nina's socket to the room has closed, so the room is marked read up to Omar's first message.
    expect(omar_design.online_user(nina.username)).to_have_count(0, timeout=LIVE_MS)
    design_pk = directory.room_pk(design)
    expect(directory.row(design).locator(f"#online-{design_pk}")).to_have_text("1", timeout=LIVE_MS)
    for room in (design, random, support):
        expect(unread_badge(directory, room)).to_be_hidden()
    mentioned = directory.row(design).locator(f"#mentioned-{design_pk}")
    expect(mentioned).to_be_hidden()

    omar_design.post("Could someone check the login page?")
    omar_design.post(f"@{nina.username} you wrote it, have a look please")
    expect_unread(unread_badge(directory, design), rendered=0, live=2)
    expect(mentioned).to_have_text("you were mentioned", timeout=LIVE_MS)
    expect(directory.row(design)).to_have_css("background-color", MENTION_BACKGROUND)
    for text in ("lunch at 12?", "the usual place", "or the new one"):
        omar_random.post(text)
    expect_unread(unread_badge(directory, random), rendered=0, live=3)
    expect(directory.row(random).locator(".mentioned")).to_be_hidden()
    expect(unread_badge(directory, support)).to_be_hidden()

    directory.reload()
    expect_unread(unread_badge(directory, design), rendered=2, live=0)
    expect_unread(unread_badge(directory, random), rendered=3, live=0)
    expect(unread_badge(directory, support)).to_be_hidden()
    expect(directory.row(design).locator(".mentioned")).to_have_text("you were mentioned")
    expect(directory.row(random).locator(".mentioned")).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    directory.page.screenshot(path=str(SCREENSHOTS / "features-directory-unread.png"))

    directory.row(design).get_by_role("link", name=f"#{design}").click()
    expect(directory.page).to_have_url(re.compile(rf"/chat/{design}/#unread-divider$"))
    log = directory.page.locator("#messages")
    divider = log.locator("#unread-divider")
    expect(divider).to_have_text("New since your last visit")
    expect(log.locator("#unread-divider + article .message-body")).to_have_text("Could someone check the login page?")
    expect(log.locator("#unread-divider ~ article")).to_have_count(2)
    expect(log.locator("article").first.locator(".message-body")).to_have_text("Morning! The new build is on staging.")


def test_when_bob_posts_in_a_room_then_his_own_open_directory_does_not_count_it_as_new(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Bob's directory in one tab, the room in another: his own message is not news to him, live or reloaded."""
    room = new_room("own-words")
    bob = new_user("bob")
    bob.open_room(room).close()
    tab = bob.open_room(room)
    directory = bob.open_live_directory()
    badge = unread_badge(directory, room)
    expect(badge).to_be_hidden()

    tab.post("my own words")
    expect(directory.row(room).locator(".activity")).to_contain_text("last message", timeout=LIVE_MS)
    expect(badge).to_be_hidden()
    directory.reload()
    expect(badge).to_be_hidden()


def test_when_alice_reads_a_room_live_then_a_directory_opened_meanwhile_counts_nothing_new(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Alice has the room open and sees Bob's message arrive; her directory in another tab shows no "new"."""
    room = new_room("open-room")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    bob_tab.post("seen live")
    expect(alice_tab.message("seen live")).to_be_visible(timeout=LIVE_MS)

    directory = alice.open_live_directory()
    expect(directory.row(room)).to_be_visible()
    expect(unread_badge(directory, room)).to_be_hidden()


ADD_MESSAGES = """
from datetime import timedelta
from django.utils import timezone
from accounts.models import User
from chat.models import Message, Room
room = Room.objects.get(name={room!r})
author = User.objects.get(username={author!r})
# A minute ago: out of the flood window, so that the author can still post.
sent = timezone.now() - timedelta(minutes=1)
for n in range({count}):
    Message.objects.create(room=room, author=author, body=f"backlog {{n:02d}}", created_at=sent)
print(Message.objects.filter(room=room).count())
"""


def test_opening_a_room_with_much_unread_lands_at_the_new_since_line(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    room = new_room("backlog")
    nina, omar = new_user("nina"), new_user("omar")
    omar_tab = omar.open_room(room)
    omar_tab.post("before nina left")
    nina_tab = nina.open_room(room)
    expect(nina_tab.message("before nina left")).to_be_visible()
    nina_tab.close()
    # Her socket's read mark is written as it closes, just after her departure is announced.
    expect(omar_tab.online_user(nina.username)).to_have_count(0, timeout=LIVE_MS)
    omar_tab.page.wait_for_timeout(1_000)
    stored = chat_server.manage_shell(ADD_MESSAGES.format(room=room, author=omar.username, count=40))
    assert stored.strip() == "41", stored
    omar_tab.post("and the latest")  # published like any message: the server renders the room's log afresh

    page = nina.open_directory()
    page.get_by_role("link", name=f"#{room}").first.click()

    divider = page.locator("#unread-divider")
    expect(divider).to_be_in_viewport()
    expect(page.locator("#messages article", has_text="and the latest")).not_to_be_in_viewport()
    # Still there once the socket has sent the log again.
    expect(page.locator("#connection")).to_contain_text("Live", timeout=LIVE_MS)
    expect(divider).to_be_in_viewport()
