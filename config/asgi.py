"""ASGI entry point: HTTP through Django, except the order routes' requests that
core.api.fast serves on the event loop (orders.api.urls.FAST_ROUTES: same answers and
headers, without Django's per-request thread and middleware chain); WebSocket streams
through Channels."""

import os

from core.asgi import platform_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django_asgi_app = platform_asgi_application()  # before importing consumers: it sets Django up

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from core.api.fast import FastPath  # noqa: E402
from orders.api.urls import FAST_ROUTES  # noqa: E402

# The session authenticates a page's socket (the consumer trusts it only from an allowed
# Origin); API clients send {"op": "auth", "token": ...}.
application = ProtocolTypeRouter(
    {
        "http": FastPath(django_asgi_app, routes=FAST_ROUTES),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)

# Every view imported before the worker serves (Django imports them on the first request):
# about 1.4 s of CPU that the first client waited for, seconds on a loaded machine, while
# the process already answered its health checks.
get_resolver().url_patterns  # noqa: B018
