"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Set up Django (apps, models) before importing anything that touches them.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from accounts.sockets import SocketAuthMiddlewareStack  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(SocketAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Under daphne's command line (`daphne config.asgi:application`), which creates its server after importing this
# module: serve with the server that closes the sockets with 1012 on SIGTERM and answers 413 to an oversize request
# body before reading it (config/server.py).
if "daphne.cli" in sys.modules:
    from daphne.cli import CommandLineInterface

    from config.server import RestartingServer

    CommandLineInterface.server_class = RestartingServer
