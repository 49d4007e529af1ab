"""Editing and deleting one's own messages: only the author gets the buttons, everyone sees the result live."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect

from tests.e2e.harness import LIVE_MS, ChatUser, Tab

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def own_actions(message: Locator) -> tuple[Locator, Locator]:
    """The message's Edit and Delete buttons, shown or not (a role query would skip hidden ones)."""
    buttons = message.locator(".own-actions button")
    return buttons.filter(has_text="Edit"), buttons.filter(has_text="Delete")


def message_id(message: Locator) -> str:
    expect(message).to_have_count(1)
    return str(message.get_attribute("id"))


def bodies(tab: Tab) -> Locator:
    return tab.messages.locator("article.message .message-body")


def test_when_maya_edits_and_deletes_her_message_then_theo_sees_the_new_text_and_the_placeholder_live(
    new_user: Callable[[str], ChatUser], new_room: Callable[[str], str]
) -> None:
    """Edit/Delete show on one's own messages only; an edit shows "(edited)" and a deletion "message deleted",
    in place, in the other's open page without a reload."""
    room = new_room("edits")
    maya, theo = new_user("maya"), new_user("theo")
    maya_tab, theo_tab = maya.open_room(room), theo.open_room(room)
    expect(maya_tab.online_user(theo.username)).to_be_visible(timeout=LIVE_MS)
    maya_tab.post("See you at 10")
    theo_tab.post("ok")
    maya_tab.post("wrong room, sorry")
    theo_tab.post("np")
    expect(bodies(maya_tab)).to_have_text(["See you at 10", "ok", "wrong room, sorry", "np"], timeout=LIVE_MS)
    expect(bodies(theo_tab)).to_have_text(["See you at 10", "ok", "wrong room, sorry", "np"], timeout=LIVE_MS)

    for tab, own, others in ((maya_tab, "See you at 10", "ok"), (theo_tab, "ok", "See you at 10")):
        for button in own_actions(tab.message(own)):
            expect(button).to_be_visible()
        for button in own_actions(tab.message(others)):
            expect(button).to_be_attached()
            expect(button).to_be_hidden()

    edited_id = message_id(maya_tab.message("See you at 10"))
    own_actions(maya_tab.message("See you at 10"))[0].click()
    editor = maya_tab.page.locator(f"form#{edited_id}").get_by_role("textbox")
    expect(editor).to_have_value("See you at 10")
    editor.fill("See you at 11")
    editor.press("Enter")
    for tab in (maya_tab, theo_tab):
        edited = tab.messages.locator(f"article#{edited_id}")
        expect(edited.locator(".message-body")).to_have_text("See you at 11", timeout=LIVE_MS)
        expect(edited.locator(".edited")).to_have_text("(edited)")
    expect(theo_tab.messages).not_to_contain_text("See you at 10")

    deleted_id = message_id(maya_tab.message("wrong room, sorry"))
    maya.accept_next_dialog()
    own_actions(maya_tab.message("wrong room, sorry"))[1].click()
    for tab in (maya_tab, theo_tab):
        deleted = tab.messages.locator(f"article#{deleted_id}")
        expect(deleted.locator(".message-body")).to_have_text("message deleted", timeout=LIVE_MS)
        expect(deleted.locator("button")).to_have_count(0)
        expect(bodies(tab)).to_have_text(["See you at 11", "ok", "message deleted", "np"])
        expect(tab.messages).not_to_contain_text("wrong room, sorry")
    assert maya.dialogs == ["confirm: Delete this message for everyone?"], maya.dialogs
    save_screenshot(maya_tab, theo_tab)

    theo_tab.page.reload()
    theo_tab.wait_connected(after=theo_tab.sockets_opened())
    expect(bodies(theo_tab)).to_have_text(["See you at 11", "ok", "message deleted", "np"])
    expect(theo_tab.messages.locator(f"article#{edited_id} .edited")).to_have_text("(edited)")


def save_screenshot(maya_tab: Tab, theo_tab: Tab) -> None:
    """docs/screenshots/features-typing-and-edit.png: Theo's page with the edited and deleted messages, and
    Maya's typing notice."""
    maya_tab.message_input.click()
    maya_tab.page.keyboard.type("Moved it to 11", delay=150)
    notice = theo_tab.typing_notice(maya_tab.user.username)
    expect(notice).to_be_visible(timeout=LIVE_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    theo_tab.page.screenshot(path=str(SCREENSHOTS / "features-typing-and-edit.png"))
