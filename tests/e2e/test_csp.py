"""The Content Security Policy in a real browser: the whole product works under it without one violation, and
logging out closes the session's other open pages' sockets for good."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e.conftest import Browsing, ChatServer
from tests.e2e.harness import LIVE_MS, ChatUser, Tab, wait_until
from tests.e2e.test_scrollback import scroll_up_until_more_load
from tests.e2e.test_typing import type_slowly

pytestmark = pytest.mark.e2e

# Every violation a page sees, as a console line (the console lines are kept per user by the harness).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI} at ${where}`);
});
"""


def watch_violations(context: BrowserContext) -> None:
    context.add_init_script(REPORT_VIOLATIONS)


def violations(user: ChatUser) -> list[str]:
    """The user's console lines about the policy: the page's own event, and Chromium's "Refused to ..." errors."""
    return [line for line in user.console if "CSP violation" in line or "Content Security Policy" in line]


def server_log_since(server: ChatServer, offset: int) -> str:
    return server.log_path.read_text(errors="replace")[offset:]


def test_walking_the_whole_product_raises_no_content_security_policy_violation(
    browsing: Browsing,
    chat_server: ChatServer,
    new_user: Callable[[str], ChatUser],
    new_room: Callable[[str], str],
) -> None:
    """Signup, directory, a room (messages, typing, edit, a private message, a mention), search, a message in its
    context, scroll-back and the live directory: everything works, and no page reports a violation."""
    log_start = len(chat_server.log_path.read_text(errors="replace"))
    room, archive = new_room("policy"), new_room("policyarchive")

    # Signup through the form, as a person does.
    alice = browsing.anonymous("alice", chat_server)
    watch_violations(alice.context)
    page, watch = alice.new_page()
    response = page.goto("/accounts/signup/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-eval" not in policy
    page.locator('input[name="username"]').fill(alice.username)
    page.locator('input[name="password1"]').fill(alice.password)
    page.locator('input[name="password2"]').fill(alice.password)
    page.locator('input[name="password2"]').press("Enter")
    expect(page).to_have_url(f"{chat_server.url}/chat/")

    # The directory's form opens the room.
    page.locator("#room-name").fill(room)
    page.locator("#room-name").press("Enter")
    alice_tab = Tab(user=alice, page=page, room=room, watch=watch)
    alice_tab.wait_connected()

    bob = new_user("bob")
    watch_violations(bob.context)
    bob_tab = bob.open_room(room)
    expect(alice_tab.online_user(bob.username)).to_be_visible(timeout=LIVE_MS)

    # Typing notices: the trigger that used a filter (eval) now selects the message box by "target:".
    type_slowly(alice_tab, "hello bob")
    expect(bob_tab.typing_notice(alice.username)).to_be_visible(timeout=LIVE_MS)
    alice_tab.message_input.press("Enter")
    expect(bob_tab.message("hello bob")).to_be_visible(timeout=LIVE_MS)
    bob_tab.post(f"hi @{alice.username}, welcome")
    # Only the message box announces typing, not the search box beside it (after the throttle's 2 s since the
    # last announcement, so that one would be sent).
    bob_tab.page.wait_for_timeout(2_500)
    type_slowly_into = bob_tab.page.locator("#search-input")
    type_slowly_into.click()
    bob_tab.page.keyboard.type("not a message", delay=100)
    bob_tab.page.wait_for_timeout(1_500)
    expect(alice_tab.typing_notice(bob.username)).to_have_count(0)
    type_slowly_into.fill("")

    # The page's own nonce'd <style> shows Edit on one's own messages and highlights mentions of oneself.
    own = alice_tab.message("hello bob")
    edit = own.locator(".own-actions button", has_text="Edit")
    expect(edit).to_be_visible()
    expect(bob_tab.message("hello bob").locator(".own-actions button", has_text="Edit")).to_be_hidden()
    mention = alice_tab.messages.locator("article.message", has_text="welcome")
    expect(mention).to_have_css("border-left-style", "solid")
    message_id = own.get_attribute("id")
    edit.click()
    editor = alice_tab.page.locator(f"form#{message_id}").get_by_role("textbox")
    editor.fill("hello bob, edited")
    editor.press("Enter")
    expect(bob_tab.message("hello bob, edited")).to_be_visible(timeout=LIVE_MS)
    expect(bob_tab.messages.locator(f"article#{message_id} .edited")).to_have_text("(edited)")

    # A private message by clicking a name in the online list (an htmx GET that swaps the form in).
    alice_tab.online_user(bob.username).click()
    expect(alice_tab.message_input).to_have_value(f"/pm {bob.username} ", timeout=LIVE_MS)
    alice_tab.message_input.press("End")
    alice_tab.page.keyboard.type("just between us")
    alice_tab.message_input.press("Enter")
    whisper = bob_tab.messages.locator("article.message--private", has_text="just between us")
    expect(whisper).to_be_visible(timeout=LIVE_MS)

    # Search, a result in its context, and back to the live room.
    search = alice_tab.page.locator("#search-input")
    search.fill("edited")
    search.press("Enter")
    results = alice_tab.page.locator("#search-results > li")
    expect(results).to_have_count(1)
    results.first.get_by_role("link").click()
    expect(alice_tab.page.locator("#message-context .is-target")).to_contain_text("hello bob, edited")
    opened = alice_tab.sockets_opened()
    alice_tab.page.get_by_role("link", name="Back to the live room").click()
    alice_tab.wait_connected(after=opened)

    # Scroll-back: older pages load as the reader scrolls up (an htmx "intersect" trigger).
    # Stored by someone else: what is stored counts against its author's rate limit.
    archivist = new_user("archivist")
    chat_server.store_messages(room=archive, author=archivist.username, bodies=[f"old {n:03d}" for n in range(70)])
    reader = bob.open_room(archive)
    articles = reader.messages.locator("article.message")
    expect(reader.message("old 069")).to_have_count(1)
    expect(reader.message("old 000")).to_have_count(0)
    scroll_up_until_more_load(reader, articles, articles.count())
    expect(reader.message("old 000")).to_have_count(1)

    # The live directory, with its unread badges (whose count is in a style attribute).
    bob_tab.post("news for the directory")
    directory = reader.leave_to_directory()
    expect(directory.row(room)).to_be_visible()
    alice_tab.post("more news")
    expect(directory.row(room).locator(".unread i")).to_have_count(1, timeout=LIVE_MS)

    for user in (alice, bob):
        assert violations(user) == [], f"{user.username}'s pages: {violations(user)}"
        # htmx reports what it refused to do (htmx:evalDisallowedError, say) as a console error. Not counted: the
        # deletion of a notice or list entry that is not on the page (by design, docs/contract.md "online list").
        errors = [line for line in user.console if line.startswith("error:") and "oobErrorNoTarget" not in line]
        assert errors == [], f"{user.username}'s pages: {errors}"
    assert "content security policy violation" not in server_log_since(chat_server, log_start)

    # The watch is not blind: a violation shows in the console and reaches the report endpoint's log.
    alice_tab.page.evaluate(
        """document.body.insertAdjacentHTML("beforeend", '<img alt="" src="https://blocked.invalid/probe.png">')"""
    )
    wait_until(lambda: violations(alice) != [], alice_tab.page, LIVE_MS, "the probe's violation in the console")
    assert "img-src" in violations(alice)[0]
    wait_until(
        lambda: "content security policy violation" in server_log_since(chat_server, log_start),
        alice_tab.page,
        LIVE_MS,
        "the probe's report in the server log",
    )


def test_logging_out_in_one_tab_closes_the_sessions_other_pages_for_good_and_no_other_sessions(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str], browsing: Browsing, chat_server: ChatServer
) -> None:
    room = new_room("logout")
    carol = new_user("carol")
    watch_violations(carol.context)
    room_tab = carol.open_room(room)
    directory = carol.open_live_directory()
    dave = new_user("dave")
    dave_tab = dave.open_room(room)
    expect(dave_tab.online_user(carol.username)).to_be_visible(timeout=LIVE_MS)

    page, _watch = carol.new_page()
    page.goto("/chat/")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{chat_server.url}/accounts/login/")

    # Closed with 4001, which the ws extension does not retry: no new socket opens, however long one waits.
    wait_until(lambda: 0 in room_tab.watch.closed, room_tab.page, 2_000, "the room page's socket to close")
    wait_until(lambda: 0 in directory.watch.closed, directory.page, 2_000, "the directory's socket to close")
    expect(dave_tab.online_user(carol.username)).to_have_count(0, timeout=LIVE_MS)
    dave_tab.post("carol has gone")
    room_tab.page.wait_for_timeout(5_000)
    assert room_tab.sockets_opened() == 1
    assert len(directory.watch.sockets) == 1
    expect(room_tab.message("carol has gone")).to_have_count(0)
    assert violations(carol) == []
