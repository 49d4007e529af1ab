"""Several lines in one message: a code block or a quote typed in the multi-line box, where Enter is a new line
and Send sends; the one-line box keeps Enter-to-send."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import LIVE_MS, ChatUser
from tests.e2e.test_chat import SCREENSHOTS

pytestmark = pytest.mark.e2e


def test_a_code_block_typed_over_several_lines_reaches_the_room_as_one_formatted_message(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    room = new_room("lines")
    alice, bob = new_user("alice"), new_user("bob")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    page = alice_tab.page

    page.locator("#message-lines summary").click()
    box = page.get_by_label("Several lines")
    expect(box).to_be_visible()
    box.click()
    for line in ("```", "for line in log:", "    print(line)", "```"):
        page.keyboard.type(line)
        page.keyboard.press("Enter")  # a new line, not a send
    page.keyboard.type("> and a quote")
    expect(bob_tab.messages.locator("pre code")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "features-several-lines.png"))
    page.locator("#message-lines").get_by_role("button", name="Send").click()

    code = bob_tab.messages.locator("pre code")
    expect(code).to_have_text("for line in log:\n    print(line)\n", timeout=LIVE_MS)
    expect(bob_tab.messages.locator("blockquote")).to_have_text("and a quote")
    expect(page.get_by_label("Several lines")).to_have_value("", timeout=LIVE_MS)

    # The one-line box still sends on Enter.
    alice_tab.send("and one line")
    expect(bob_tab.message("and one line")).to_have_count(1, timeout=LIVE_MS)
