"""The email notifications' pages: the preference (logged in) and the unsubscribe link every email carries (not)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages as notices
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from chat import services
from chat.http_limits import write_limited

CHOICES = {"on": True, "off": False}


def delay_text() -> str:
    """CHAT_EMAIL_DELAY_SECONDS as a person says it: "2 minutes", "90 seconds"."""
    seconds = round(settings.CHAT_EMAIL_DELAY_SECONDS)
    if seconds % 60 == 0 and seconds >= 60:
        minutes = seconds // 60
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


@require_http_methods(["GET", "POST"])
@login_required
@write_limited("notifications")
def notifications(request: HttpRequest) -> HttpResponse:
    """Whether the user gets emails about messages they missed (`POST email=on|off`)."""
    user = request.user
    if request.method == "POST":
        choice = request.POST.get("email", "")
        if choice not in CHOICES:
            return notifications_page(request, error="Choose on or off.", status=400)
        services.emails.email_enabled_set(user=user, enabled=CHOICES[choice])
        notices.success(request, f"Emails about messages you missed are {choice}.")
        return redirect("notifications")
    return notifications_page(request)


def notifications_page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    context = {"enabled": services.emails.email_enabled(user=request.user), "delay_text": delay_text(), "error": error}
    return render(request, "chat/notifications.html", context, status=status)


# The token is the credential (signed, made for this user only): no session, so no CSRF token either. A mail
# program's one-click unsubscribe (RFC 8058) posts `List-Unsubscribe=One-Click` without cookies or a form token.
@csrf_exempt
@require_http_methods(["GET", "POST"])
@write_limited("notifications")
def notifications_unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Turn a person's notification emails off from the link in one of them, without logging in; or on again."""
    user = services.emails.unsubscribe_user(token=token)
    if user is None:
        return render(request, "chat/unsubscribe.html", {"invalid": True}, status=404)
    enabled = request.method == "POST" and request.POST.get("email") == "on"
    services.emails.email_enabled_set(user=user, enabled=enabled)
    if request.POST.get("List-Unsubscribe") == "One-Click":
        return HttpResponse("Unsubscribed.\n", content_type="text/plain; charset=utf-8")
    return render(request, "chat/unsubscribe.html", {"token": token, "enabled": enabled, "email": user.email})
