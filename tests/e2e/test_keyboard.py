"""The keyboard at 1280x800: a skip link first, a room's messages adding few Tab stops, a focus ring one can see."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ChatServer
from tests.e2e.harness import DESKTOP, ChatUser, Tab

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
BODIES = [f"standup note {n:02d}" for n in range(1, 31)]
# What the focused element is, for messages: its tag, id and classes, and its text.
DESCRIBE_FOCUS = """() => {
  const el = document.activeElement;
  if (el === document.body || el === null) return "body";
  const text = (el.textContent || "").trim().slice(0, 30);
  return `${el.tagName.toLowerCase()}#${el.id}.${[...el.classList].join(".")} ${text}`;
}"""
# The focused element's outline as the browser draws it.
FOCUS_OUTLINE = """() => {
  const style = getComputedStyle(document.activeElement);
  return [style.outlineStyle, parseFloat(style.outlineWidth), style.outlineColor];
}"""


def focused(page: Page) -> str:
    return str(page.evaluate(DESCRIBE_FOCUS))


def tab_into_page(page: Page) -> None:
    """Press Tab until the focus leaves the page (as to the browser's toolbar), then once more: the first stop."""
    for _ in range(200):
        page.keyboard.press("Tab")
        if focused(page) == "body":
            break
    else:
        raise AssertionError("200 Tab presses never left the page")
    page.keyboard.press("Tab")


def relative_luminance(rgb: tuple[float, float, float]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(v) for v in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_with_white(color: str) -> float:
    """WCAG contrast ratio against white of a computed colour, drawn over white: rgb()/rgba(), or color(srgb r g b / a)
    as Chrome computes a color-mix()."""
    numbers = [float(n) for n in re.findall(r"[\d.]+", color)]
    assert len(numbers) in (3, 4), f"not an sRGB colour: {color}"
    alpha = numbers[3] if len(numbers) == 4 else 1.0
    scale = 255 if color.startswith("color(srgb") else 1
    rgb = tuple(alpha * v * scale + (1 - alpha) * 255 for v in numbers[:3])
    return 1.05 / (relative_luminance(rgb) + 0.05)


def test_when_a_keyboard_user_opens_a_busy_room_then_the_skip_link_comes_first_and_leads_to_the_message_box(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    """The first Tab stop is "Skip to message box", shown when focused; Enter puts the focus in the message box.
    Without it, Tab reaches the box past one stop per message (its way into its thread, which is how a keyboard
    starts one) and a few others: 31 messages add none for their reaction choices."""
    room = new_room("standup")
    alice = new_user("alice", device=DESKTOP)
    chat_server.store_messages(room=room, author=alice.username, bodies=BODIES)
    kim = new_user("kim", device=DESKTOP)
    tab: Tab = kim.open_room(room)
    tab.post("my own note, with its Edit and Delete")
    page = tab.page

    tab_into_page(page)
    skip = page.get_by_role("link", name="Skip to message box")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport(ratio=1)
    page.keyboard.press("Enter")
    expect(tab.message_input).to_be_focused()

    tab_into_page(page)
    stops = []
    while focused(page) != "input#message-input. ":
        page.keyboard.press("Tab")
        stops.append(focused(page))
        assert len(stops) <= 80, "more than 80 Tab stops before the message box:\n" + "\n".join(stops)
    assert not [s for s in stops if "reaction-choice" in s], "reaction choices take Tab stops:\n" + "\n".join(stops)
    thread_links = [s for s in stops if ".thread-link" in s]
    assert len(thread_links) == len(BODIES) + 1, "not one stop per message:\n" + "\n".join(stops)
    others = len(stops) - len(thread_links)
    assert others <= 25, f"{others} Tab stops besides the messages' to the message box:\n" + "\n".join(stops)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("body").click(position={"x": 5, "y": 790})  # nothing focused, the page as it reads
    page.screenshot(path=str(SCREENSHOTS / "room-desktop.png"))


def test_when_a_keyboard_user_tabs_through_a_room_then_links_buttons_and_boxes_show_a_ring_of_3_to_1(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    """WCAG 2.2 focus appearance: every stop from the skip link to Send (links, buttons, the search and message boxes)
    draws a solid outline at least 2 px wide whose colour has at least 3:1 contrast against white."""
    room = new_room("focus")
    kim = new_user("kim", device=DESKTOP)
    tab = kim.open_room(room)
    tab.post("something to edit")
    page = tab.page

    tab_into_page(page)
    seen: dict[str, str] = {}
    for _ in range(60):
        tag = str(page.evaluate("document.activeElement.tagName")).lower()
        style, width, color = page.evaluate(FOCUS_OUTLINE)
        where = focused(page)
        assert style != "none", f"{where}: no focus ring"
        assert width >= 2, f"{where}: a focus ring of {width}px"
        ratio = contrast_with_white(color)
        assert ratio >= 3, f"{where}: focus ring {color} has {ratio:.2f}:1 against white"
        seen.setdefault(tag, where)
        if where.startswith("button#.") and "Send" in where:
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError(f"Send never took the focus; seen {seen}")
    assert {"a", "button", "input"} <= set(seen), f"the walk did not cover links, buttons and boxes: {seen}"
