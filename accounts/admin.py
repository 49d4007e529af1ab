"""Users in the Django admin; deleting one removes their messages from open pages too."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

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
