"""Personal API tokens: made, found by the hash of what a request presents, revoked. Only hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, User

TOKEN_PREFIX = "chat"
# How often a token's last use is written at most: a busy client costs one UPDATE a minute, not one per request.
LAST_USED_INTERVAL = timedelta(minutes=1)
NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for the user, and the token itself: the only time it exists outside the request that uses it."""
    prefix = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_token = ApiToken.objects.create(user=user, name=name, prefix=prefix, key_hash=token_hash(token))
    return api_token, token


def api_token_list(*, user: User) -> list[ApiToken]:
    """The user's tokens that still work, the newest first."""
    return list(ApiToken.objects.filter(user=user, revoked_at=None).order_by("-created_at", "-pk"))


def api_token_revoke(*, user: User, token_id: int) -> ApiToken | None:
    """Revoke one of the user's own tokens (None: they have no such token); it stops working at once."""
    api_token = ApiToken.objects.filter(pk=token_id, user=user, revoked_at=None).first()
    if api_token is not None:
        api_token.revoked_at = timezone.now()
        api_token.save(update_fields=["revoked_at"])
    return api_token


def api_token_authenticate(*, token: str) -> ApiToken | None:
    """The working token a request presents, with its user loaded; None when unknown, revoked, or its user is
    inactive. Its last use is recorded."""
    if not token.startswith(f"{TOKEN_PREFIX}_") or len(token) > 200:
        return None
    api_token = ApiToken.objects.select_related("user").filter(key_hash=token_hash(token), revoked_at=None).first()
    if api_token is None or not api_token.user.is_active:
        return None
    api_token_used(api_token=api_token)
    return api_token


def api_token_used(*, api_token: ApiToken) -> None:
    """Record the token's use, unless it was recorded within the last minute (by this request or another)."""
    now = timezone.now()
    since = now - LAST_USED_INTERVAL
    if api_token.last_used_at is not None and api_token.last_used_at > since:
        return
    # Conditional: of concurrent requests, one writes.
    stale = Q(last_used_at=None) | Q(last_used_at__lte=since)
    if ApiToken.objects.filter(stale, pk=api_token.pk).update(last_used_at=now):
        api_token.last_used_at = now
