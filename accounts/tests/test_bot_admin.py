"""Bots in the admin: staff mark a user as a bot on its page and give its webhook's URL; the secret is made then."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Bot, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(make_user) -> Client:
    staff = make_user("root")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    return client


def test_staff_mark_a_user_as_a_bot_and_set_its_webhook_on_its_page(admin_client, make_user):
    bot = make_user("pinger")
    page = admin_client.get(f"/admin/accounts/user/{bot.pk}/change/")
    assert page.status_code == 200
    assert b'name="is_bot"' in page.content
    assert b'name="bot-0-webhook_url"' in page.content

    response = admin_client.post(
        f"/admin/accounts/user/{bot.pk}/change/",
        {
            "username": "pinger",
            "is_active": "on",
            "is_bot": "on",
            "date_joined_0": "2026-12-07",
            "date_joined_1": "12:00:00",
            "bot-TOTAL_FORMS": "1",
            "bot-INITIAL_FORMS": "0",
            "bot-MIN_NUM_FORMS": "0",
            "bot-MAX_NUM_FORMS": "1",
            "bot-0-user": str(bot.pk),
            "bot-0-webhook_url": "https://bots.example.com/pinger",
            "bot-0-owner": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(pk=bot.pk).is_bot
    row = Bot.objects.get(user=bot)
    assert row.webhook_url == "https://bots.example.com/pinger"
    assert len(row.webhook_secret) >= 40
    # The secret is shown on the page, for whoever runs the bot's server.
    assert row.webhook_secret.encode() in admin_client.get(f"/admin/accounts/user/{bot.pk}/change/").content


def test_the_add_page_has_no_webhook_yet(admin_client):
    page = admin_client.get("/admin/accounts/user/add/")
    assert page.status_code == 200
    assert b"bot-0-webhook_url" not in page.content
