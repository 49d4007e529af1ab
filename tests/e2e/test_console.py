"""What htmx says in the console: nothing, while people type, send, come and go (a frame whose target a page lacks
is logged as htmx:oobErrorNoTarget)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import DIRECTORY_SOCKET_PATH, LIVE_MS, ChatUser, DirectoryTab

pytestmark = pytest.mark.e2e


def htmx_errors(user: ChatUser) -> list[str]:
    return [line for line in user.console if "htmx:" in line]


def test_when_people_type_send_arrive_and_leave_then_no_page_logs_an_htmx_error(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    """Bob reads a room and has the directory open: Alice arrives, types, sends; Carol comes and goes; a message is
    shared without typing (a file). No page of Bob's or Alice's logs an htmx error."""
    room = new_room("quiet")
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    bob_tab = bob.open_room(room)
    bob_directory = bob.open_live_directory()
    alice_tab = alice.open_room(room)
    expect(bob_tab.online_user(alice.username)).to_be_visible(timeout=LIVE_MS)
    alice_tab.message_input.press_sequentially("typing, slowly", delay=60)
    expect(bob_tab.typing_notice(alice.username)).to_be_visible(timeout=LIVE_MS)
    alice_tab.message_input.press("Enter")
    expect(bob_tab.message("typing, slowly")).to_be_visible(timeout=LIVE_MS)
    carol_tab = carol.open_room(room)
    expect(bob_tab.online_user(carol.username)).to_be_visible(timeout=LIVE_MS)
    carol_tab.close()
    expect(bob_tab.online_user(carol.username)).to_have_count(0, timeout=LIVE_MS)
    form = alice_tab.page.locator("#upload-form")
    form.locator("summary", has_text="Attach a file").click()
    form.locator("input[name=file]").set_input_files({"name": "a.txt", "mimeType": "text/plain", "buffer": b"a\n"})
    form.get_by_role("button", name="Upload").click()
    expect(bob_tab.messages.locator("a.attachment--file")).to_have_count(1, timeout=LIVE_MS)
    bob_directory.page.wait_for_timeout(1_500)  # the directory's news comes once a second
    assert htmx_errors(bob) == [], "\n".join(htmx_errors(bob))
    assert htmx_errors(alice) == [], "\n".join(htmx_errors(alice))
    # The placeholders that give each delete its target are gone with it.
    for page in (bob_tab.page, bob_directory.page, alice_tab.page):
        expect(page.locator("template")).to_have_count(0)


def test_when_a_room_a_search_does_not_list_is_busy_then_the_directory_logs_no_htmx_error(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    """Bob's directory shows a search that lists no room; a message in a room he joined logs nothing there."""
    room = new_room("unlisted")
    alice, bob = new_user("alice"), new_user("bob")
    bob.open_room(room).close()
    page, watch = bob.new_page(DIRECTORY_SOCKET_PATH)
    page.goto("/chat/?q=nothing-is-called-this")
    DirectoryTab(user=bob, page=page, watch=watch).wait_connected()
    alice.open_room(room).post("news for the directories")
    page.wait_for_timeout(1_500)
    assert htmx_errors(bob) == [], "\n".join(htmx_errors(bob))
