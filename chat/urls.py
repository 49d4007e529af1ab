from django.urls import path

from chat import views

app_name = "chat"
urlpatterns = [
    path("", views.room_directory, name="directory"),
    path("messages/<int:message_id>/edit/", views.message_edit, name="message_edit"),
    path("messages/<int:message_id>/delete/", views.message_retract, name="message_retract"),
    path("messages/<int:message_id>/reactions/", views.reaction_toggle, name="reaction_toggle"),
    path("files/<int:attachment_id>/", views.attachment_file, name="attachment"),
    path(
        "files/<int:attachment_id>/thumbnail/", views.attachment_file, {"thumbnail": True}, name="attachment_thumbnail"
    ),
    path("<str:room_name>/attachments/", views.attachment_upload, name="attachments"),
    path("<str:room_name>/private-to/", views.private_message_form, name="private_form"),
    path("<str:room_name>/history/", views.room_history, name="history"),
    path("<str:room_name>/search/", views.room_search, name="search"),
    path("<str:room_name>/messages/<int:message_id>/", views.message_in_context, name="message"),
    # Any path, so that every invalid name (slashes included) gets the clear 400 page.
    path("<path:room_name>/", views.room_detail, name="room"),
]
