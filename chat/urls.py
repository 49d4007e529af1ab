from django.urls import path

from chat import views, views_threads


def conversation_urls(key: str, *, room_only: bool = False) -> list:
    """The pages under one conversation: `/chat/<room_name>/...` or `/dm/<username>/...` (the same views)."""
    patterns = [
        path(f"<str:{key}>/attachments/", views.attachment_upload, name="attachments"),
        path(f"<str:{key}>/private-to/", views.private_message_form, name="private_form"),
        path(f"<str:{key}>/history/", views.room_history, name="history"),
        path(f"<str:{key}>/search/", views.room_search, name="search"),
        path(f"<str:{key}>/messages/<int:message_id>/", views.message_in_context, name="message"),
        path(f"<str:{key}>/notifications/", views.notification_level, name="notifications"),
        path(f"<str:{key}>/threads/<int:message_id>/", views_threads.thread_detail, name="thread"),
    ]
    if room_only:
        patterns += [
            path(f"<str:{key}>/leave/", views.room_leave, name="leave"),
            path(f"<str:{key}>/settings/", views.room_settings, name="settings"),
            path(f"<str:{key}>/members/", views.room_member_add, name="members"),
            path(f"<str:{key}>/members/remove/", views.room_member_remove, name="member_remove"),
        ]
    # Any path, so that every invalid name (slashes included) gets the clear 400 or 404 page.
    return [*patterns, path(f"<path:{key}>/", views.room_detail, name="room")]


app_name = "chat"
urlpatterns = [
    path("", views.room_directory, name="directory"),
    # A thread by its first message alone (a direct conversation's links: the same for both people).
    path("messages/<int:message_id>/edit/", views.message_edit, name="message_edit"),
    path("messages/<int:message_id>/delete/", views.message_retract, name="message_retract"),
    path("messages/<int:message_id>/reactions/", views.reaction_toggle, name="reaction_toggle"),
    path("files/<int:attachment_id>/", views.attachment_file, name="attachment"),
    path(
        "files/<int:attachment_id>/thumbnail/", views.attachment_file, {"thumbnail": True}, name="attachment_thumbnail"
    ),
    *conversation_urls("room_name", room_only=True),
]

# Included at /dm/ with the namespace "dm": a direct conversation's pages, by the other person's username.
dm_urlpatterns = (conversation_urls("username"), "dm")
