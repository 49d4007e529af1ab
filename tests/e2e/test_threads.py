"""Threads in a browser: replying beside a message, the live summary in the log, the thread's own page on a desktop
and on a phone, and a third person's followed threads counting live."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.harness import LIVE_MS, PHONE, ChatUser, Tab, wait_until

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def open_thread(tab: Tab, body: str) -> Page:
    """Follow the message's thread link in this tab, and wait until the thread's socket has sent it."""
    watch_before = len(tab.watch.sockets)
    tab.message(body).locator("a.thread-link").click()
    expect(tab.page).to_have_url(re.compile(r"/threads/\d+/$"))
    wait_until(lambda: len(tab.watch.sockets) > watch_before and tab.watch.live, tab.page, 10_000, "thread socket")
    expect(tab.page.locator("#thread")).to_be_visible()
    return tab.page


def reply(page: Page, text: str) -> None:
    page.locator("#thread-form input[name=message]").fill(text)
    page.locator("#thread-form input[name=message]").press("Enter")
    expect(page.locator("#thread-form input[name=message]")).to_have_value("", timeout=LIVE_MS)


def replies(page: Page):
    return page.locator("[id^=thread-replies-] article.message .message-body")


def test_two_people_reply_in_a_thread_live_and_a_mentioned_third_sees_it_in_their_threads(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    room = new_room("design")
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    alice_tab, bob_tab = alice.open_room(room), bob.open_room(room)
    carol_directory = carol.open_live_directory()
    alice_tab.post("Which font for the new logo?")
    alice_tab.post("Unrelated: lunch at noon")
    expect(bob_tab.message("Which font for the new logo?")).to_be_visible(timeout=LIVE_MS)

    thread = open_thread(bob_tab, "Which font for the new logo?")
    expect(thread.locator("#thread article.message").first).to_contain_text("Which font for the new logo?")
    reply(thread, f"Inter, and @{carol.username} has the files")
    expect(replies(thread)).to_have_text([f"Inter, and @{carol.username} has the files"], timeout=LIVE_MS)

    # In the room's log the reply does not show; the question's summary counts it, live.
    question = alice_tab.message("Which font for the new logo?")
    expect(question.locator(".thread-summary")).to_contain_text("1 reply", timeout=LIVE_MS)
    expect(question.locator(".thread-summary")).to_contain_text(bob.username)
    expect(alice_tab.messages).not_to_contain_text("Inter, and")

    # Carol was mentioned: she follows the thread, and her sidebar and title say so, live.
    threads_link = carol_directory.page.locator("#sidebar-threads")
    expect(threads_link.locator(".unread")).to_have_text("1", timeout=LIVE_MS)
    expect(carol_directory.page).to_have_title("(1) Rooms · Chat", timeout=LIVE_MS)

    # Alice opens the thread from the summary and answers; Bob's thread page shows it live.
    alice_thread = open_thread(alice_tab, "Which font for the new logo?")
    expect(replies(alice_thread)).to_have_count(1)
    reply(alice_thread, "Perfect, thanks")
    expect(replies(thread)).to_have_text(
        [f"Inter, and @{carol.username} has the files", "Perfect, thanks"], timeout=LIVE_MS
    )
    expect(threads_link.locator(".unread")).to_have_text("2", timeout=LIVE_MS)
    alice_thread.set_viewport_size({"width": 1280, "height": 800})
    alice_thread.screenshot(path=SCREENSHOTS / "thread-desktop.png")

    # Carol's list of threads, then the thread: opening it reads it.
    threads_page, _ = carol.new_page()
    threads_page.goto("/threads/")
    row = threads_page.locator("#threads li[data-thread]")
    expect(row).to_have_count(1)
    expect(row.locator(".unread")).to_have_text("2")
    row.locator("a").click()
    expect(threads_page.locator("#thread")).to_contain_text("Which font for the new logo?")
    expect(threads_link.locator(".unread")).to_have_count(0, timeout=LIVE_MS)
    expect(carol_directory.page).to_have_title("Rooms · Chat", timeout=LIVE_MS)
    for user in (alice, bob, carol):
        assert not [line for line in user.console if line.startswith(("error", "pageerror"))], user.console


def test_a_thread_on_a_phone_is_a_page_of_its_own_with_its_reply_box_in_reach(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    room = new_room("mobile")
    dana, eli = new_user("dana", device=PHONE), new_user("eli")
    eli_tab = eli.open_room(room)
    eli_tab.post("Release notes are up, comments welcome")
    for n in range(3):
        eli_tab.post(f"note {n}")
    dana_tab = dana.open_room(room)

    thread = open_thread(dana_tab, "Release notes are up, comments welcome")
    reply(thread, "Looks good to me")
    expect(replies(thread)).to_have_text(["Looks good to me"], timeout=LIVE_MS)
    box = thread.locator("#thread-input").bounding_box()
    viewport = thread.viewport_size
    assert box is not None
    assert viewport is not None
    assert box["y"] + box["height"] <= viewport["height"], "the reply box is below the screen"
    expect(eli_tab.message("Release notes are up, comments welcome").locator(".thread-summary")).to_contain_text(
        "1 reply", timeout=LIVE_MS
    )
    thread.screenshot(path=SCREENSHOTS / "thread-phone.png")
    assert not [line for line in dana.console if line.startswith(("error", "pageerror"))], dana.console


def test_on_a_desktop_the_thread_opens_beside_the_log_and_back_and_reload_work(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str], tmp_path: Path
) -> None:
    room = new_room("beside")
    fay, gus = new_user("fay"), new_user("gus")
    fay_tab, gus_tab = fay.open_room(room), gus.open_room(room)
    fay_tab.post("Agenda for Monday?")
    gus_tab.post("Coffee first")
    page = fay_tab.page

    # By keyboard: back from the message box by Shift+Tab to the question's "Reply in thread", then Enter.
    link = fay_tab.message("Agenda for Monday?").locator("a.thread-link")
    fay_tab.message_input.focus()
    for _ in range(20):
        page.keyboard.press("Shift+Tab")
        if link.evaluate("element => element === document.activeElement"):
            break
    else:
        pytest.fail("Shift+Tab from the message box never reached the message's thread link")
    expect(link).to_be_visible()
    sockets = fay_tab.sockets_opened()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/threads/\d+/$"))
    wait_until(lambda: fay_tab.sockets_opened() > sockets and fay_tab.watch.live, page, 10_000, "thread socket")

    # The log and the thread, side by side; the question is shown once, in the thread.
    log, thread = page.locator("#messages"), page.locator("#thread")
    expect(thread).to_contain_text("Agenda for Monday?")
    expect(log).to_contain_text("Coffee first")
    log_box, thread_box = log.bounding_box(), thread.bounding_box()
    assert log_box is not None
    assert thread_box is not None
    assert thread_box["x"] >= log_box["x"] + log_box["width"] - 1, "the thread is not beside the log"
    expect(page.locator("article[id^=message-]", has_text="Agenda for Monday?")).to_have_count(1)

    # A reply with a file, then one typed; both in the thread, neither in the log; the log stays live.
    attachment = tmp_path / "agenda.txt"
    attachment.write_text("1. coffee\n2. plans\n")
    page.locator("#thread-upload-form summary").click()
    page.locator("#thread-upload-file").set_input_files(attachment)
    page.locator("#thread-upload-form button[type=submit]").click()
    reply(page, "Plans for the quarter")
    expect(replies(page)).to_have_count(2, timeout=LIVE_MS)
    expect(page.locator("#thread .attachment-name")).to_have_text("agenda.txt")
    expect(log).not_to_contain_text("Plans for the quarter")
    gus_tab.post("Back at two")
    expect(log).to_contain_text("Back at two", timeout=LIVE_MS)
    expect(gus_tab.message("Agenda for Monday?").locator(".thread-summary")).to_contain_text(
        "2 replies", timeout=LIVE_MS
    )
    page.screenshot(path=SCREENSHOTS / "thread-desktop.png")

    # Reload keeps the thread beside the log; back returns to the log alone, with the summary.
    page.reload()
    expect(page.locator("#thread")).to_contain_text("Plans for the quarter")
    expect(page.locator("#messages")).to_contain_text("Back at two")
    page.go_back()
    expect(page).to_have_url(re.compile(rf"/chat/{room}/$"))
    expect(page.locator("#thread")).to_have_count(0)
    expect(fay_tab.message("Agenda for Monday?").locator(".thread-summary")).to_contain_text(
        "2 replies", timeout=LIVE_MS
    )
    for user in (fay, gus):
        assert not [line for line in user.console if line.startswith(("error", "pageerror"))], user.console
