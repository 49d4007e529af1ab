from django.urls import re_path

from chat.consumers import ChatRoomConsumer

websocket_urlpatterns = [
    # Any name reaches the consumer, which closes invalid ones with a 4xxx code.
    re_path(r"^ws/chat/(?P<room_name>[^/]+)/$", ChatRoomConsumer.as_asgi()),
]
