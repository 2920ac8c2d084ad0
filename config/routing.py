"""WebSocket routes (docs/streams.md)."""

from typing import Any, cast

from django.urls import path, re_path

from core.websocket import websocket_not_found
from orders.streams.consumers import StreamConsumer

websocket_urlpatterns = [
    path("ws/v1", StreamConsumer.as_asgi()),
    # Any other path: 404, not the router's ValueError (a 500). An ASGI application, which
    # Channels' URLRouter takes where Django's stubs expect a view.
    re_path(r"", cast(Any, websocket_not_found)),
]
