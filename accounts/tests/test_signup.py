"""Signing up and logging in through allauth's real forms."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from tests.support.html import visible_text

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-passphrase"


def signup(client: Client, username: str, password: str = PASSWORD, email: str = ""):
    data = {"username": username, "email": email, "password1": password, "password2": password}
    return client.post("/accounts/signup/", data)


def test_signing_up_with_a_username_and_no_email_logs_in_and_lands_on_the_directory(client: Client):
    response = signup(client, "Dana")
    assert response.status_code == 302
    assert response.url == "/chat/"
    page = client.get("/chat/").content.decode()
    assert "Signed in as Dana" in visible_text(page)
    assert User.objects.get().email == ""


def test_a_username_taken_in_another_casing_is_refused(client: Client, alice):
    response = signup(client, "ALICE")
    assert response.status_code == 200
    assert "already" in visible_text(response.content.decode()).lower()
    assert User.objects.count() == 1


def test_a_weak_password_is_refused(client: Client):
    response = signup(client, "erin", password="password")
    assert response.status_code == 200
    assert "too common" in visible_text(response.content.decode())
    assert not User.objects.exists()


def test_login_takes_the_username_in_any_casing(client: Client):
    User.objects.create_user(username="Frank", password=PASSWORD)
    response = client.post("/accounts/login/", {"login": "fRANK", "password": PASSWORD})
    assert response.status_code == 302
    assert response.url == "/chat/"


def test_logout_ends_the_session(alice_client: Client):
    response = alice_client.post("/accounts/logout/")
    assert response.status_code == 302
    assert alice_client.get("/chat/").status_code == 302


def test_the_account_pages_wear_the_products_layout(client: Client):
    page = client.get("/accounts/signup/").content.decode()
    assert 'class="site-header"' in page
    assert "chat.css" in page
    assert 'name="username"' in page
