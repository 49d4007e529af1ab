"""Error pages with DEBUG off: the product's header and look, a sentence, and the way back to the rooms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, Response, expect

from tests.e2e.conftest import ChatServer
from tests.e2e.harness import ChatUser

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PANEL = "rgb(255, 255, 255)"  # --panel in static/css/chat.css
ACCENT = "rgb(49, 87, 213)"  # --accent
RENDER_500 = "from django.template.loader import render_to_string; print(render_to_string('500.html'))"


def expect_error_page(page: Page, response: Response | None, status: int, heading: str) -> None:
    """The page answered `status` and shows, styled, the site's header, the heading and a link back to /chat/."""
    assert response is not None, f"{page.url} gave no response"
    assert response.status == status, f"{page.url} answered {response.status}"
    expect(page.locator("header.site-header").get_by_role("link", name="Chat")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    card = page.locator(".error-page")
    expect(card).to_have_css("background-color", PANEL)  # the stylesheet is there: not a bare page
    back = card.get_by_role("link", name="Back to the rooms")
    expect(back).to_have_attribute("href", "/chat/")
    expect(back).to_have_css("background-color", ACCENT)


def test_when_a_page_does_not_exist_for_the_reader_then_a_404_in_the_products_look_leads_back(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str], chat_server: ChatServer
) -> None:
    """A private room to an outsider, a conversation with oneself, with nobody, and a path that is nothing: each a 404
    with the same page (a private room is not told apart from a missing one), whose link opens the directory."""
    private = new_room("boardroom")
    alice, bob = new_user("alice"), new_user("bob")
    alice_page, _ = alice.new_page()
    alice_page.goto(f"/chat/{private}/settings/")
    alice_page.locator("#privacy-form input[name='private']").check()
    alice_page.locator("#privacy-form").get_by_role("button", name="Save").click()
    expect(alice_page.locator(".notices")).to_contain_text("is now private")

    page, _ = bob.new_page()
    for path in (f"/chat/{private}/", f"/dm/{bob.username}/", "/dm/nobody-of-that-name/", "/no/such/page/"):
        response = page.goto(path)
        expect_error_page(page, response, 404, "Nothing here")
        expect(page.locator(".error-page")).to_contain_text(path)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "error-404.png"))
    page.get_by_role("link", name="Back to the rooms").click()
    expect(page).to_have_url(f"{chat_server.url}/chat/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Rooms")


def test_when_a_form_is_posted_without_its_token_then_a_403_in_the_products_look_leads_back(
    new_user: Callable[..., ChatUser], new_room: Callable[[str], str]
) -> None:
    """A form whose CSRF token is gone (as from a page left open across a new login) is refused with the product's
    403 page, saying nothing changed, and the room is still joined."""
    room = new_room("tokenless")
    bob = new_user("bob")
    tab = bob.open_room(room)
    leave = tab.page.locator(".room-actions form")
    leave.locator("input[name=csrfmiddlewaretoken]").evaluate("input => input.remove()")  # test-side: a stale form
    with tab.page.expect_navigation() as navigation:
        leave.get_by_role("button", name="Leave").click()
    expect_error_page(tab.page, navigation.value, 403, "That form was out of date")
    expect(tab.page.locator(".error-page")).to_contain_text("Nothing was changed")
    tab.page.get_by_role("link", name="Back to the rooms").click()
    expect(tab.page.locator(f"#sidebar li[data-room='{room.lower()}']")).to_have_count(1)


def test_when_the_server_fails_then_the_500_page_renders_without_a_request_in_the_products_look(
    new_user: Callable[..., ChatUser], chat_server: ChatServer
) -> None:
    """500.html rendered as Django does for a server error, with no request: the site's look, no account links (there
    is no user to show), and the way back; shown in the browser from the server's own origin and stylesheet."""
    html = chat_server.manage_shell(RENDER_500)
    assert "Back to the rooms" in html
    assert 'href="/chat/"' in html
    assert "Log out" not in html
    assert "Log in" not in html
    visitor = new_user("vera")
    page, _ = visitor.new_page()
    page.route(
        f"{chat_server.url}/server-error-probe/",
        lambda route: route.fulfill(status=500, body=html, content_type="text/html"),
    )
    response = page.goto("/server-error-probe/")
    expect_error_page(page, response, 500, "Something went wrong on our side")
