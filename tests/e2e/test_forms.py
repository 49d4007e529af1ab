"""Forms people fill: the signup form's errors (red, under the field they are about) and a room's privacy setting,
which says who stays before it is saved."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Browsing, ChatServer
from tests.e2e.harness import DESKTOP, ChatUser

pytestmark = pytest.mark.e2e

ERROR = "rgb(179, 38, 30)"  # --error in static/css/chat.css


def test_when_a_signup_password_is_too_short_then_the_error_shows_in_red_under_the_password_box(
    browsing: Browsing, chat_server: ChatServer
) -> None:
    """ "This password is too short" is red, at least 14 px, right under the password box (not under the e-mail box
    above it), and the box says it is invalid and names the error."""
    visitor = browsing.anonymous("erin", chat_server, device=DESKTOP)
    page, _ = visitor.new_page()
    page.goto("/accounts/signup/")
    page.locator("#id_username").fill(visitor.username)
    page.locator("#id_password1").fill("short")
    page.locator("#id_password2").fill("short")
    page.locator("form:has(#id_password2) [type=submit]").click()

    error = page.get_by_text("This password is too short")
    expect(error).to_be_visible()
    expect(error).to_have_css("color", ERROR)
    assert float(error.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")) >= 14
    email, password = page.locator("#id_email"), page.locator("#id_password1")
    again = page.locator("label[for=id_password2]")
    email_box, password_box = email.bounding_box(), password.bounding_box()
    error_box, again_box = error.bounding_box(), again.bounding_box()
    assert email_box is not None
    assert password_box is not None
    assert error_box is not None
    assert again_box is not None
    assert error_box["y"] >= password_box["y"] + password_box["height"], "the error is above the password box"
    assert error_box["y"] < again_box["y"], "the error is not between the password box and the next field"
    expect(password).to_have_attribute("aria-invalid", "true")
    error_id = page.locator("ul.errorlist", has=error).get_attribute("id")
    assert error_id is not None
    assert error_id in str(password.get_attribute("aria-describedby"))
    # The password's advice is a list, in a block of its own under the box (it was inside a paragraph).
    expect(page.locator("#id_password1_helptext li").first).to_be_visible()


def test_when_a_room_creator_opens_its_settings_then_it_says_everyone_joined_stays_when_it_becomes_private(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    """Before saving "private": the page says that everyone who has joined stays a member, and lists them; after, the
    notice says how many stayed."""
    room = new_room("bookclub")
    alice, bob = new_user("alice"), new_user("bob")
    alice.open_room(room).post("first chapter tonight")
    bob.open_room(room)
    page, _ = alice.new_page()
    page.goto(f"/chat/{room}/settings/")
    note = page.locator("#privacy-note")
    expect(note).to_contain_text("Everyone who has joined this room stays a member when it becomes private")
    expect(note).to_contain_text("2 will stay")
    expect(note.get_by_role("listitem")).to_have_text(sorted([alice.username, bob.username], key=str.lower))
    expect(page.locator("#privacy-form input[name=private]")).to_have_attribute("aria-describedby", "privacy-note")

    page.locator("#privacy-form input[name=private]").check()
    page.locator("#privacy-form").get_by_role("button", name="Save").click()
    expect(page.locator(".notices")).to_contain_text(f"#{room} is now private: its 2 members stay in it")
