from django.urls import re_path

from chat.consumers.directory import RoomDirectoryConsumer
from chat.consumers.room import ChatRoomConsumer

websocket_urlpatterns = [
    re_path(r"^ws/directory/$", RoomDirectoryConsumer.as_asgi()),
    # Any name reaches the consumer, which closes invalid ones with a 4xxx code.
    re_path(r"^ws/chat/(?P<room_name>[^/]+)/$", ChatRoomConsumer.as_asgi()),
    # A direct conversation: the same consumer, the same frames; only its two people get in (others: 4003).
    re_path(r"^ws/dm/(?P<username>[^/]+)/$", ChatRoomConsumer.as_asgi()),
]
