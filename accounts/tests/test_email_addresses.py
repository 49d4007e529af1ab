"""Email addresses on allauth's page (/accounts/email/): the first one added becomes the account's address."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_first_address_added_becomes_the_accounts_address(alice, alice_client: Client):
    response = alice_client.post("/accounts/email/", {"email": "alice@example.com", "action_add": ""})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"
    assert EmailAddress.objects.get(user=alice).primary


def test_a_second_address_waits_until_it_is_made_primary(alice, alice_client: Client):
    alice_client.post("/accounts/email/", {"email": "alice@example.com", "action_add": ""})
    alice_client.post("/accounts/email/", {"email": "alice@work.example.com", "action_add": ""})
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"
    alice_client.post("/accounts/email/", {"email": "alice@work.example.com", "action_primary": ""})
    alice.refresh_from_db()
    assert alice.email == "alice@work.example.com"


def test_with_verification_configured_an_added_address_is_sent_a_verification_link(alice, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "optional"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client = Client()
    client.force_login(alice)
    client.post("/accounts/email/", {"email": "alice@example.com", "action_add": ""})
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert "/accounts/confirm-email/" in mail.outbox[0].body
    assert not EmailAddress.objects.get(user=alice).verified


def test_a_password_reset_mails_a_link_to_the_accounts_address(alice, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    alice.email = "alice@example.com"
    alice.save()
    response = Client().post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert "/accounts/password/reset/key/" in mail.outbox[0].body
