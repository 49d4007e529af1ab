"""Moderation in the Django admin: every change a moderator makes goes through chat.services, so open pages see it."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from accounts.models import User
from chat import services
from chat.models import EmailNotice, Membership, Message, NotificationPreference, PrivateMessage, Room


class MembershipInline(admin.TabularInline):
    """A private room's members are who may read it: staff add and remove them here, as its creator does on its
    settings page; their sidebars and sockets follow (RoomAdmin.save_related)."""

    model = Membership
    fields = ["user", "joined_at", "last_read_id"]
    readonly_fields = ["joined_at", "last_read_id"]
    raw_id_fields = ["user"]
    extra = 1


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "created_by", "created_at", "last_message_at", "read_only"]
    list_filter = ["kind", "read_only", "created_at"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    ordering = ["name"]
    fields = ["name", "kind", "created_by", "created_at", "read_only"]
    actions = ["make_read_only", "open_for_posting"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        # Two people's conversations are not rooms to moderate here (their messages have their own list).
        return super().get_queryset(request).exclude(kind=Room.Kind.DIRECT).select_related("created_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> list[str]:
        # A room's name is its URL: renaming it would strand the pages and sockets open on it.
        return ["name", "created_by", "created_at"]

    def formfield_for_choice_field(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "kind":  # a room becomes private or public, never a direct conversation
            kwargs["choices"] = [(kind.value, kind.label) for kind in (Room.Kind.PUBLIC, Room.Kind.PRIVATE)]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool) -> None:
        room = form.instance
        before = set(room.memberships.values_list("user_id", flat=True))
        super().save_related(request, form, formsets, change)
        after = set(room.memberships.values_list("user_id", flat=True))
        added = list(User.objects.filter(pk__in=after - before))
        services.memberships.room_members_changed(room=room, added=added, removed_ids=before - after)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Rooms are created by opening /chat/<name>/, which validates the name.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        # Deleting would pull the room from under its open sockets; a moderator makes it read-only instead.
        return False

    def save_model(self, request: HttpRequest, obj: Room, form: forms.ModelForm, change: bool) -> None:
        read_only_changed = "read_only" in form.changed_data
        kind = obj.kind
        if change and "kind" in form.changed_data:
            obj.kind = Room.objects.values_list("kind", flat=True).get(pk=obj.pk)  # changed by the service below
        super().save_model(request, obj, form, change)
        if change and read_only_changed:
            services.moderation.room_read_only_set(room=obj, read_only=obj.read_only, by=request.user)
        if change and kind != obj.kind:
            services.memberships.room_privacy_set(room=obj, private=kind == Room.Kind.PRIVATE, by=request.user)

    @admin.action(description="Make the selected rooms read-only", permissions=["change"])
    def make_read_only(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        self._read_only_set(request, queryset, read_only=True)

    @admin.action(description="Open the selected rooms for posting", permissions=["change"])
    def open_for_posting(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        self._read_only_set(request, queryset, read_only=False)

    def _read_only_set(self, request: HttpRequest, queryset: QuerySet[Room], *, read_only: bool) -> None:
        rooms = list(queryset.exclude(read_only=read_only))
        for room in rooms:
            services.moderation.room_read_only_set(room=room, read_only=read_only, by=request.user)
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
        services.moderation.message_delete(message=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        """The "delete selected" action: through the service as well, one frame per room or user."""
        services.moderation.message_delete_many(messages=queryset, by=request.user)


@admin.register(Message)
class MessageAdmin(MessageAdminBase):
    """Room messages (private messages have their own list)."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).exclude(room__kind=Room.Kind.DIRECT)


@admin.register(PrivateMessage)
class PrivateMessageAdmin(MessageAdminBase):
    list_display = ["id", "created_at", "author", "recipient", "room", "excerpt"]
    search_fields = ["body", "author__username", "recipient__username", "room__name"]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    """Who turned notification emails off, and when each person was last emailed (README, "Notifications by email")."""

    list_display = ["user", "email_enabled", "last_emailed_at"]
    list_filter = ["email_enabled"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]
    readonly_fields = ["last_emailed_at"]


@admin.register(EmailNotice)
class EmailNoticeAdmin(admin.ModelAdmin):
    """Messages waiting to be emailed if still unread; the worker writes and deletes them, so they are read-only."""

    list_display = ["id", "created_at", "user", "message", "claimed_by"]
    list_select_related = ["user", "message"]
    search_fields = ["user__username"]
    ordering = ["-id"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: EmailNotice | None = None) -> bool:
        return False
