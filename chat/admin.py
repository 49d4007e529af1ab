"""Moderation in the Django admin: every change a moderator makes goes through chat.services, so open pages see it."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from chat import services
from chat.models import Message, PrivateMessage, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at", "read_only"]
    list_filter = ["read_only", "created_at"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    ordering = ["name"]
    fields = ["name", "created_at", "read_only"]
    actions = ["make_read_only", "open_for_posting"]

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> list[str]:
        # A room's name is its URL: renaming it would strand the pages and sockets open on it.
        return ["name", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Rooms are created by opening /chat/<name>/, which validates the name.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        # Deleting would pull the room from under its open sockets; a moderator makes it read-only instead.
        return False

    def save_model(self, request: HttpRequest, obj: Room, form: forms.ModelForm, change: bool) -> None:
        read_only_changed = "read_only" in form.changed_data
        super().save_model(request, obj, form, change)
        if change and read_only_changed:
            services.room_read_only_set(room=obj, read_only=obj.read_only, by=request.user)

    @admin.action(description="Make the selected rooms read-only", permissions=["change"])
    def make_read_only(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        self._read_only_set(request, queryset, read_only=True)

    @admin.action(description="Open the selected rooms for posting", permissions=["change"])
    def open_for_posting(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        self._read_only_set(request, queryset, read_only=False)

    def _read_only_set(self, request: HttpRequest, queryset: QuerySet[Room], *, read_only: bool) -> None:
        rooms = list(queryset.exclude(read_only=read_only))
        for room in rooms:
            services.room_read_only_set(room=room, read_only=read_only, by=request.user)
        state = "read-only" if read_only else "open for posting"
        self.message_user(request, f"{len(rooms)} room(s) made {state}.", messages.SUCCESS)


class MessageAdminBase(admin.ModelAdmin):
    """Messages can be read, searched and deleted, never added or edited: a change would not reach open pages."""

    list_display = ["id", "created_at", "room", "author", "excerpt"]
    list_filter = ["created_at"]
    search_fields = ["body", "author__username", "room__name"]
    date_hierarchy = "created_at"
    ordering = ["-id"]
    list_select_related = ["room", "author", "recipient"]
    fields = ["room", "author", "recipient", "created_at", "body"]
    # Searching by author or room is a join: show counts only when cheap (no COUNT(*) of a huge table).
    show_full_result_count = False

    @admin.display(description="text")
    def excerpt(self, message: Message) -> str:
        return Truncator(message.body).chars(80)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        """The delete page: through the service, so every open page drops the message live."""
        services.message_delete(message=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        """The "delete selected" action: through the service as well, one frame per room or user."""
        services.message_delete_many(messages=queryset, by=request.user)


@admin.register(Message)
class MessageAdmin(MessageAdminBase):
    """Room messages (private messages have their own list)."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).filter(recipient__isnull=True)


@admin.register(PrivateMessage)
class PrivateMessageAdmin(MessageAdminBase):
    list_display = ["id", "created_at", "author", "recipient", "room", "excerpt"]
    search_fields = ["body", "author__username", "recipient__username", "room__name"]
