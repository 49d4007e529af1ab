from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from chat import email_views, views_threads
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
    path("accounts/", include("allauth.urls")),
    path("chat/", include("chat.urls")),
    path("dm/", include(dm_urlpatterns)),
    path("threads/", views_threads.threads_followed, name="threads"),
    path("admin/", admin.site.urls),
    # For load balancers (README, "Operations"): no slash, no login, no redirect.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Browsers post what the Content-Security-Policy blocked here (settings: report-uri).
    path("csp-report", csp_report.csp_report, name="csp_report"),
]
