"""WebSocket routes (docs/streams.md)."""

from django.urls import path

from orders.streams.consumers import StreamConsumer

websocket_urlpatterns = [path("ws/v1", StreamConsumer.as_asgi())]
