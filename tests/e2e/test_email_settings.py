"""Email in the browser: adding an address on allauth's email page, the notifications settings page from the account
menu, and how the missed-messages email looks (docs/screenshots/notifications-settings.png, email-missed-messages.png).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ChatServer

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The email's HTML as the worker renders it, for two messages (no send: the look is what is checked here).
RENDER_EMAIL = """
import datetime, json
from django.template.loader import render_to_string
from django.utils import timezone
from chat.services.emails import MissedMessage
sent = timezone.now().replace(hour=9, minute=41, second=0, microsecond=0)
site = "https://chat.example.com"
items = [
    MissedMessage(author="alice", conversation="@alice", url=site + "/dm/alice/messages/42/", sent_at=sent,
                  text="Are you coming to the standup? We moved it to 10:15."),
    MissedMessage(author="carol", conversation="#deploys", url=site + "/chat/deploys/messages/57/",
                  sent_at=sent + datetime.timedelta(minutes=3),
                  text="@bob the release build is red again, can you look?"),
]
context = {{"user": {{"username": {username}}}, "items": items, "count": 2, "chat_url": site + "/chat/",
           "settings_url": site + "/accounts/notifications/",
           "unsubscribe_url": site + "/accounts/notifications/unsubscribe/token/"}}
print(json.dumps(render_to_string("chat/email/missed_messages.html", context)))
"""


def test_an_address_added_on_the_email_page_shows_on_the_notifications_page_which_turns_emails_off(
    new_user, chat_server: ChatServer
) -> None:
    bob = new_user("bob")
    page, _ = bob.new_page()
    page.goto("/chat/")
    page.locator(".account-nav").get_by_role("link", name="Email").click()
    expect(page).to_have_url(f"{chat_server.url}/accounts/email/")
    address = f"{bob.username}@example.com"
    page.locator("input[name='email']").fill(address)
    page.locator("button[name='action_add']").click()
    expect(page.locator("main")).to_contain_text(address)

    page.locator(".account-nav").get_by_role("link", name="Notifications").click()
    expect(page).to_have_url(f"{chat_server.url}/accounts/notifications/")
    expect(page.locator("#notifications-address")).to_contain_text(address)
    expect(page.locator("input[name='email'][value='on']")).to_be_checked()
    page.locator("input[name='email'][value='off']").check()
    page.locator("#notifications-form").get_by_role("button", name="Save").click()
    expect(page.locator(".notices")).to_contain_text("are off")
    expect(page.locator("input[name='email'][value='off']")).to_be_checked()
    page.screenshot(path=str(SCREENSHOTS / "notifications-settings.png"))
    assert bob.console == []


def test_the_missed_messages_email_reads_well_in_a_browser(new_user, chat_server: ChatServer) -> None:
    bob = new_user("bob")
    html = json.loads(
        chat_server.manage_shell(RENDER_EMAIL.format(username=json.dumps("bob"))).strip().splitlines()[-1]
    )
    page, _ = bob.new_page()
    page.set_viewport_size({"width": 720, "height": 640})
    page.set_content(html)
    expect(page.get_by_role("heading")).to_have_text("2 messages you have not read yet")
    expect(page.get_by_role("link", name="Open in #deploys")).to_have_attribute(
        "href", "https://chat.example.com/chat/deploys/messages/57/"
    )
    expect(page.get_by_role("link", name="Stop these emails")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "email-missed-messages.png"), full_page=True)
