"""Account forms through the chat's write limits (chat/flood.py), in place of allauth's own rate limits (turned off in
the settings): one mechanism, one set of settings (CHAT_WRITE_LIMITS), one answer (429, Retry-After, a sentence).

Every POST to an allauth view is counted per client (the user, or the address when anonymous) under its kind:
signup, login, password_reset (the request and the new password from the emailed link), password_change (change
or set) and account (any other form: email addresses, reauthentication). Logging out is never limited. The admin's
login counts as a login. Two limits count something else than the client:

- login_failed, per account: failed passwords for the username typed (recorded from Django's user_login_failed
  signal); once full, a login to that account is refused, even with the right password, until the window has room.
- password_reset_email, per email address typed into the reset form: how many reset emails one mailbox gets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from chat import flood, http_limits

# URL name -> kind; any other allauth view ("account_...") is "account".
ACCOUNT_KINDS = {
    "account_signup": "signup",
    "account_login": "login",
    "admin:login": "login",
    "account_reset_password": "password_reset",
    "account_reset_password_from_key": "password_reset",
    "account_change_password": "password_change",
    "account_set_password": "password_change",
}
NOT_LIMITED = {"account_logout"}
# The field each login form types the username into.
LOGIN_FIELDS = {"account_login": "login", "admin:login": "username"}


def typed_key(prefix: str, value: str) -> str:
    """A key for what someone typed (a username, an email address), the same in any casing; not kept in clear."""
    return f"{prefix}:{hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]}"


def account_kind(view_name: str) -> str | None:
    if view_name in NOT_LIMITED:
        return None
    if view_name in ACCOUNT_KINDS:
        return ACCOUNT_KINDS[view_name]
    return "account" if view_name.startswith("account_") else None


class AccountWriteLimitMiddleware:
    """Counts each account form's POST before its view runs; over a limit the view is not called."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: tuple, kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        if request.method in http_limits.SAFE_METHODS or request.resolver_match is None:
            return None
        view_name = request.resolver_match.view_name
        kind = account_kind(view_name)
        if kind is None:
            return None
        refusal = http_limits.refused(request, kind)
        if refusal is None and view_name in LOGIN_FIELDS:
            username = request.POST.get(LOGIN_FIELDS[view_name], "")
            if username:
                refusal = login_failures_full(request, username)
        if refusal is None and view_name == "account_reset_password":
            email = request.POST.get("email", "")
            if email:
                refusal = http_limits.refused(request, "password_reset_email", key=typed_key("email", email))
        return refusal


def login_failures_full(request: HttpRequest, username: str) -> HttpResponse | None:
    """The 429 when the account's failed logins fill their window (looked at, not counted)."""
    verdict = flood.admit("login_failed", typed_key("login", username), count=False)
    return None if verdict.admitted else http_limits.too_many(request, "login_failed", verdict.retry_after)


@receiver(user_login_failed, dispatch_uid="chat_login_failed_counted")
def login_failure_count(sender: str, credentials: dict[str, Any], **_: Any) -> None:
    """Every failed password counts against the account it was typed for, from any page and any address."""
    username = credentials.get("username")
    if username:
        flood.admit("login_failed", typed_key("login", str(username)))
