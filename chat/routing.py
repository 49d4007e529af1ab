from django.urls import re_path

from chat.consumers import ChatRoomConsumer, RoomDirectoryConsumer

websocket_urlpatterns = [
    re_path(r"^ws/directory/$", RoomDirectoryConsumer.as_asgi()),
    # Any name reaches the consumer, which closes invalid ones with a 4xxx code.
    re_path(r"^ws/chat/(?P<room_name>[^/]+)/$", ChatRoomConsumer.as_asgi()),
]
