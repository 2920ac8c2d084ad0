"""Django's ASGI handler, with a request body's length known however it was sent."""

from __future__ import annotations

import io
from typing import IO, Any

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.db import connections


class PlatformASGIRequest(ASGIRequest):
    """A body sent without Content-Length (`Transfer-Encoding: chunked`, a client streaming
    a generator) arrives whole, but what reads a body by its length took it for none: DRF
    parsed `{}`, so `POST /api/orders/cancel-all` with `{"market": ...}` chunked cancelled
    every market's orders, and Django's DATA_UPLOAD_MAX_MEMORY_SIZE was never checked. The
    handler has read the whole body before the request is made: its size is the length."""

    def __init__(self, scope: dict[str, Any], body_file: IO[bytes]) -> None:
        super().__init__(scope, body_file)
        if "CONTENT_LENGTH" not in self.META:
            size = body_file.seek(0, io.SEEK_END)
            body_file.seek(0)
            if size:
                self.META["CONTENT_LENGTH"] = str(size)


class PlatformASGIHandler(ASGIHandler):
    request_class = PlatformASGIRequest


def platform_asgi_application() -> PlatformASGIHandler:
    """As django.core.asgi.get_asgi_application, with the platform's request, and the
    database connections of its requests closed as each ends (connections_per_request)."""
    django.setup(set_prefix=False)
    if settings.WEB_CONNECTIONS_PER_REQUEST:
        connections_per_request()
    return PlatformASGIHandler()


def connections_per_request() -> None:
    """CONN_MAX_AGE 0 in this process, whatever DB_CONN_MAX_AGE says (it is the engine's and
    the Celery workers'). Django's ASGI handler runs each request's synchronous part in a
    thread of its own: the connection it opened was kept for CONN_MAX_AGE, never reused by
    another request, and stayed open until the collector freed its thread's objects. Four
    API-key clients (a signed request reads its key row) held 92 connections of one web
    worker within 15 s; PostgreSQL then refused every new one ("too many clients": 500s,
    and no connection for an engine taking a shard over). Django's documentation: "When
    using ASGI, persistent connections should be disabled"."""
    for alias in connections:
        connections.settings[alias]["CONN_MAX_AGE"] = 0
