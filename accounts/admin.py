"""Users in the Django admin; deleting one removes their messages from open pages too, a new password or
deactivation closes their open sockets (chat.services)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse

from accounts.models import User
from chat import services
from chat.models import Message


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "email", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "date_joined", "last_login"]
    date_hierarchy = "date_joined"

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        self.delete_queryset(request, User.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        """Their messages go through the service first, so open pages drop them live; then the accounts."""
        users = list(queryset)
        services.message_delete_many(
            messages=Message.objects.filter(Q(author__in=users) | Q(recipient__in=users)), by=request.user
        )
        super().delete_queryset(request, queryset)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """Django's password form; a new password also closes the account's sockets (the admin's own stay)."""
        before = self.stored_password(id)
        response = super().user_change_password(request, id, form_url)
        user = User.objects.filter(pk=unquote(id)).first() if before is not None else None
        if user is not None and user.password != before:
            keep = request.session if user.pk == request.user.pk else None
            services.user_sockets_close(user=user, reason="password_changed", keep_session=keep)
        return response

    @staticmethod
    def stored_password(id: str) -> str | None:
        """The user's password hash as stored now (None: no such user)."""
        try:
            return User.objects.filter(pk=unquote(id)).values_list("password", flat=True).first()
        except (ValueError, ValidationError):  # not a primary key: Django's view answers 404
            return None
