from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """A chat user; usernames are unique regardless of case."""

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
