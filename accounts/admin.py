"""Users in the Django admin. Deleting one, or setting a password, is told to the other apps (accounts.signals):
the chat removes their messages from open pages and closes their sockets."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from accounts.models import ApiToken, Bot, User
from accounts.signals import password_set_by_admin, users_deleting


class BotInline(admin.StackedInline):
    """A bot's webhook, on its user's page: the URL messages are POSTed to and the secret that signs them (made
    when the row is; give it to whoever runs the bot's server)."""

    model = Bot
    fk_name = "user"
    can_delete = True
    fields = ["webhook_url", "owner", "webhook_secret", "created_at"]
    readonly_fields = ["webhook_secret", "created_at"]
    raw_id_fields = ["owner"]
    verbose_name = "bot webhook"
    # A URL typed without a scheme is https (Django 6's default).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "email", "is_active", "is_staff", "is_bot", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "is_bot", "date_joined", "last_login"]
    fieldsets = [*BaseUserAdmin.fieldsets, ("Bot", {"fields": ["is_bot"]})]
    inlines = [BotInline]

    def get_inlines(self, request: HttpRequest, obj: User | None) -> list:
        """The bot's webhook is set on the user's page, once the account exists."""
        return [] if obj is None else self.inlines

    date_hierarchy = "date_joined"

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        self.delete_queryset(request, User.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        """The other apps let go of the accounts first (their messages leave open pages live); then they go."""
        users_deleting.send(sender=User, users=list(queryset), by=request.user)
        super().delete_queryset(request, queryset)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """Django's password form; a new password also ends the account's other sessions (the admin's own stays)."""
        before = self.stored_password(id)
        response = super().user_change_password(request, id, form_url)
        user = User.objects.filter(pk=unquote(id)).first() if before is not None else None
        if user is not None and user.password != before:
            password_set_by_admin.send(sender=User, user=user, request=request)
        return response

    @staticmethod
    def stored_password(id: str) -> str | None:
        """The user's password hash as stored now (None: no such user)."""
        try:
            return User.objects.filter(pk=unquote(id)).values_list("password", flat=True).first()
        except (ValueError, ValidationError):  # not a primary key: Django's view answers 404
            return None


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """People's API tokens: staff see them and can revoke one (set "revoked at"); only their owner makes them."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["created_at", "last_used_at", "revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["user", "name", "prefix", "key_hash", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
