from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from chat import api, email_views, views_threads, views_tokens
from chat.urls import dm_urlpatterns
from config import csp_report, health

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:directory", permanent=False)),
    # Ours, beside allauth's account pages (before them: allauth's patterns come first otherwise).
    path("accounts/notifications/", email_views.notifications, name="notifications"),
    path(
        "accounts/notifications/unsubscribe/<str:token>/",
        email_views.notifications_unsubscribe,
        name="notifications_unsubscribe",
    ),
    # Personal API tokens (chat/views_tokens.py), before allauth's pages under the same prefix.
    path("accounts/tokens/", views_tokens.api_tokens, name="api_tokens"),
    path("accounts/tokens/<int:token_id>/revoke/", views_tokens.api_token_revoke, name="api_token_revoke"),
    path("accounts/", include("allauth.urls")),
    path("chat/", include("chat.urls")),
    path("dm/", include(dm_urlpatterns)),
    path("threads/", views_threads.threads_followed, name="threads"),
    path("admin/", admin.site.urls),
    # The HTTP API (docs/api.md); anything else under /api/ is a 404 in its JSON shape.
    path("api/v1/", api.urls()),
    re_path(r"^api/", api.api_not_found),
    # For load balancers (README, "Operations"): no slash, no login, no redirect.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Browsers post what the Content-Security-Policy blocked here (settings: report-uri).
    path("csp-report", csp_report.csp_report, name="csp_report"),
]
