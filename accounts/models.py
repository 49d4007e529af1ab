from __future__ import annotations

import secrets

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """A chat user; usernames are unique regardless of case.

    A bot is a user marked `is_bot` (in the admin): its `bot` row says where its webhook is. The flag is on the user
    so that a message's mentioned users and a direct message's recipient, already loaded, tell without a query
    whether a bot must hear of it.
    """

    # db_default too: the column exists before, and while, the other apps' older migrations run (they insert users).
    is_bot = models.BooleanField(
        default=False,
        db_default=False,
        help_text="A bot: messages that mention it, or are sent to it directly, go to its webhook (see Bot).",
    )

    class Meta:
        constraints = [models.UniqueConstraint(Lower("username"), name="accounts_user_username_ci_unique")]


class ApiToken(models.Model):
    """A personal API token: the person's own access to the HTTP API (`Authorization: Bearer <token>`).

    Only a hash of the token is stored (accounts.tokens): the token itself is shown once, when made. `prefix` is a
    short, non-secret part of it that the tokens page shows, so that a person can tell their tokens apart.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="The owner's label for it.")
    prefix = models.CharField(max_length=16)
    # sha256 of the whole token, in hex: a token is 256 random bits, so a fast hash is enough (nobody can guess one
    # from its hash by trying candidates, unlike a password) and it lets a request be matched with one indexed query.
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Recorded at most once a minute (accounts.tokens.api_token_used): not a write per request.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="accounts_token_user_recent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


def bot_secret_new() -> str:
    return secrets.token_urlsafe(32)


class Bot(models.Model):
    """Where a bot user's messages go: its webhook's URL, and the secret that signs what is sent there.

    The secret is shown to the bot's owner (and staff) so that their server can check the signature.
    """

    user = models.OneToOneField(User, on_delete=models.CASCADE, primary_key=True, related_name="bot")
    # Who runs it; none for a bot made by staff.
    owner = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="bots_owned")
    webhook_url = models.URLField(max_length=500, help_text="Messages to the bot are POSTed here as signed JSON.")
    webhook_secret = models.CharField(
        max_length=100, default=bot_secret_new, help_text="Signs each request (X-Chat-Signature); keep it secret."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"bot {self.user_id}"
