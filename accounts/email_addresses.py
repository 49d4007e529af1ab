"""An account's first email address becomes its address: the primary one (`user.email`), where password resets
and notification emails go. allauth's email page adds an address without making it primary; the user would have to
press "Make primary" before anything reached it."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from allauth.account.signals import email_added
from django.dispatch import receiver


@receiver(email_added)
def first_address_made_primary(sender: object, request: object, user, email_address: EmailAddress, **kwargs) -> None:
    if email_address.pk and not EmailAddress.objects.filter(user=user, primary=True).exists():
        email_address.set_as_primary()
