"""A room on a phone (390x844, touch): the log takes the screen, the rest opens on a tap, and a tap reacts to nothing
it was not aimed at."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import ChatServer
from tests.e2e.harness import LIVE_MS, PHONE, ChatUser, Tab

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
BODIES = [f"on the train, line {n:02d}" for n in range(1, 41)]
SCREEN_HEIGHT = PHONE["viewport"]["height"]


def toggle(page: Page, name: str) -> Locator:
    """The toggle (a <summary>) whose text starts with `name`: "Rooms", "Online", "Search", "Attach", "Account"."""
    return page.locator("summary", has_text=re.compile(rf"^\s*{re.escape(name)}"))


def box(locator: Locator) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None, f"{locator} has no box: it is not shown"
    return found


def not_cut(locator: Locator) -> bool:
    """The element's whole text is drawn: nothing overflows its box (no ellipsis, no clipping)."""
    return bool(locator.evaluate("el => el.scrollWidth <= el.clientWidth + 1"))


def test_when_a_busy_room_opens_on_a_phone_then_the_log_takes_most_of_the_screen_and_the_rest_opens_on_a_tap(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    """40 messages on a 390x844 touch screen: the log is most of the screen, with the newest message and the message
    box in view; the sidebar, the online list, a room's links and the file form are folded, and each opens on a tap
    and folds again; the opened sidebar shows its headings, whole room names and "All rooms"."""
    room, secret = new_room("commute"), new_room("secretplansforthenewoffice")
    alice = new_user("alice")
    chat_server.store_messages(room=room, author=alice.username, bodies=BODIES)
    pia = new_user("pia", device=PHONE)
    pia.open_room(secret).close()
    tab = pia.open_room(room)
    page = tab.page
    expect(tab.messages.locator("article.message")).to_have_count(len(BODIES))

    log = box(page.locator(".log"))
    assert log["height"] >= 0.55 * SCREEN_HEIGHT, f"the log is {log['height']:.0f} px of a {SCREEN_HEIGHT} px screen"
    page_height = page.evaluate("document.documentElement.scrollHeight")
    assert page_height <= SCREEN_HEIGHT + 1, f"the page is {page_height} px tall on a {SCREEN_HEIGHT} px screen"
    expect(tab.message(BODIES[-1])).to_be_in_viewport()
    expect(tab.message_input).to_be_in_viewport()
    expect(page.locator("#room-title")).to_be_in_viewport()

    sidebar, online = page.locator("#sidebar"), tab.online_users
    file_input = page.locator("#upload-form input[name=file]")
    search = page.get_by_role("searchbox", name=f"Search #{room}")
    for folded in (sidebar, online, file_input, search):
        expect(folded).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "room-phone.png"))

    toggle(page, "Rooms").tap()
    expect(sidebar).to_be_visible()
    for heading in ("Rooms", "People"):
        expect(sidebar.get_by_role("heading", name=heading)).to_be_visible()
    all_rooms = sidebar.get_by_role("link", name="All rooms")
    expect(all_rooms).to_be_in_viewport(ratio=1)
    for name in (room, secret):
        entry = sidebar.locator(f"li[data-room='{name.lower()}'] .sidebar-name")
        expect(entry).to_have_text(f"#{name}")
        assert not_cut(entry), f"#{name} is cut short in the opened sidebar"
    page.screenshot(path=str(SCREENSHOTS / "room-phone-sidebar.png"))
    toggle(page, "Rooms").tap()
    expect(sidebar).to_be_hidden()

    toggle(page, "Online").tap()
    expect(tab.online_user(pia.username)).to_be_visible()
    expect(tab.online_user(pia.username)).to_be_in_viewport(ratio=1)
    toggle(page, "Online").tap()
    expect(online).to_be_hidden()

    toggle(page, "Search").tap()
    expect(search).to_be_visible()
    assert box(search)["width"] >= 0.6 * PHONE["viewport"]["width"], "the search box is squeezed"
    expect(page.locator(".room-actions").get_by_role("link", name="All rooms")).to_be_visible()
    toggle(page, "Search").tap()
    expect(search).to_be_hidden()

    # The file form opens above the message box; once the file is shared it folds again.
    toggle(page, "Attach").tap()
    expect(file_input).to_be_visible()
    expect(page.locator("#upload-form").get_by_role("button", name="Upload")).to_be_in_viewport(ratio=1)
    file_input.set_input_files({"name": "timetable.txt", "mimeType": "text/plain", "buffer": b"08:12 08:42 09:12\n"})
    page.locator("#upload-form input[name=caption]").fill("the new timetable")
    page.locator("#upload-form").get_by_role("button", name="Upload").tap()
    shared = tab.messages.locator("article.message", has_text="the new timetable")
    expect(shared.locator("a.attachment--file")).to_contain_text("timetable.txt", timeout=LIVE_MS)
    expect(file_input).to_be_hidden()
    expect(tab.error).to_have_text("")


def test_when_a_phone_user_taps_a_message_then_its_reactions_show_and_only_a_tap_on_one_reacts(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    """Taps on a message's header (where the choices show on a desktop) add no reaction for anyone: they show the
    choices under it, and a tap on a choice reacts, seen by the author."""
    room = new_room("platform")
    alice, pia = new_user("alice"), new_user("pia", device=PHONE)
    alice_tab, pia_tab = alice.open_room(room), pia.open_room(room)
    alice_tab.post("Train is late again")
    alice_tab.post("Platform 4 now")
    message = pia_tab.message("Train is late again")
    expect(message).to_be_visible(timeout=LIVE_MS)
    picker = message.locator(".reaction-picker")

    header = message.locator("header")
    width, height = box(header)["width"], box(header)["height"]
    for x in (width - 8, width * 0.75, width / 2):
        header.tap(position={"x": x, "y": height / 2})
    pia_tab.page.wait_for_timeout(1_000)  # a reaction would be back from the server by now
    expect(message.locator(".reactions button")).to_have_count(0)
    expect(alice_tab.message("Train is late again").locator(".reactions button")).to_have_count(0)
    expect(picker).to_be_visible()
    expect(pia_tab.message("Platform 4 now").locator(".reaction-picker")).to_be_hidden()

    picker.get_by_role("button", name="React with \N{FACE WITH OPEN MOUTH}").tap()
    expect(alice_tab.message("Train is late again").locator("button.reaction")).to_have_text(
        re.compile("\N{FACE WITH OPEN MOUTH}\\s+1"), timeout=LIVE_MS
    )
    # Tapping another message moves the choices there.
    pia_tab.message("Platform 4 now").locator(".message-body").tap()
    expect(picker).to_be_hidden()
    expect(pia_tab.message("Platform 4 now").locator(".reaction-picker")).to_be_visible()


def test_when_someone_with_a_long_name_writes_on_a_phone_then_edit_and_delete_stay_on_the_header_line(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    """A 30-character name on a 390 px screen: Edit and Delete sit together on the line of the name, not below it."""
    room = new_room("longnames")
    writer = new_user("penelope_from_the_night_shift", device=PHONE)
    tab: Tab = writer.open_room(room)
    message = tab.post("Leaving the office now, see you tomorrow")
    edit, delete = message.get_by_role("button", name="Edit"), message.get_by_role("button", name="Delete")
    expect(edit).to_be_visible()
    expect(delete).to_be_visible()
    author = box(message.locator(".message-author"))
    edit_box, delete_box = box(edit), box(delete)
    assert abs(edit_box["y"] - delete_box["y"]) <= 2, "Edit and Delete are on different lines"
    edit_middle = edit_box["y"] + edit_box["height"] / 2
    assert author["y"] <= edit_middle <= author["y"] + 24, (
        f"Edit is on a line of its own (its middle at {edit_middle:.0f}, the name's line at {author['y']:.0f})"
    )
    assert edit_box["x"] < delete_box["x"], "Delete is not after Edit"
    assert delete_box["x"] + delete_box["width"] <= PHONE["viewport"]["width"], "Delete runs off the screen"
