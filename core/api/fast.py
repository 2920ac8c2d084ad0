"""A short way through the web tier for a few hot API routes under ASGI (config/asgi.py).

Django's ASGI handler gives every request a thread of its own (asgiref's per-request
ThreadSensitiveContext, in which the synchronous middleware chain and view run, two thread
hops each way), a disconnect watcher task and 19 middlewares; for an order that was most of
the web worker's CPU, and the engine's round trip held the thread.

Here a route (a URL name of config.urls and a method) has `prepare(request, **kwargs)`
decide, with no side effect, whether it
answers the request alone: it returns an awaitable handler, or None and Django answers the
request exactly as without this (body replayed). A request it takes runs on the event loop
with the work of every middleware of MIDDLEWARE that has something to do for it, in
MIDDLEWARE's order: the same middleware objects' hooks (django-prometheus' counters,
SecurityMiddleware's headers, X-Frame-Options, CommonMiddleware's Content-Length) or the
same functions (trusted proxies, correlation id and access line, no-store and Vary on API
answers, the API's 500 under DEBUG); then Django's log line for answers >= 400.

The others do nothing for such a request: its path is canonical and has no query string
(CanonicalSlash, NulByte); no session or cookie is read (Session, CSRF: the views are
csrf_exempt and header credentials carry no cookie; Auth, Messages, Htmx, Axes); it is not
a static file (WhiteNoise); /api/ answers carry no Content-Security-Policy (CSP). The host
is checked as CommonMiddleware checks it and a request SecurityMiddleware would redirect
to HTTPS goes to Django, which answers both as always.
The fast path turns itself off when MIDDLEWARE is not the list it knows (FAST_MIDDLEWARE)
or DISALLOWED_USER_AGENTS / PREPEND_WWW are set. tests/orders/api/test_order_api_fast.py
compares its answers with the full path's: status, headers, body, counters, log lines."""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import response_for_exception
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.template.response import SimpleTemplateResponse
from django.urls import Resolver404, ResolverMatch, get_resolver
from django.utils.log import log_response
from django_prometheus.middleware import PrometheusAfterMiddleware, PrometheusBeforeMiddleware
from django_prometheus.utils import Time, TimeSince

from core.logging import correlation_context
from core.middleware import (
    access_log,
    api_debug_error,
    private_api_cache_headers,
    proxy_headers_trust,
    request_correlation_id,
)

FastHandler = Callable[[], Awaitable[HttpResponse]]
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

# What the fast path reproduces (see the module's text), in config/settings/base.py's order.
FAST_MIDDLEWARE = (
    "core.middleware.TrustedProxyMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.middleware.CorrelationIdMiddleware",
    "core.middleware.NulByteMiddleware",
    "core.middleware.PrivateApiCacheMiddleware",
    "core.middleware.CanonicalSlashMiddleware",
    "core.middleware.ApiDebugErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
)


@dataclass(frozen=True, slots=True)
class FastRoute:
    method: str
    url_name: str  # config.urls' name: the path is resolved as Django resolves it
    prepare: Callable[..., FastHandler | None]  # called with the URL's keyword arguments
    prefix: str = "/api/"  # paths that cannot be this route are not resolved


def view_in_thread(view: Callable[..., HttpResponseBase], request: HttpRequest, **kwargs: Any) -> FastHandler:
    """A Django view run whole in a worker thread (the ORM may be used there; the event loop
    serves other requests meanwhile), with the connection checks Django's request signals do."""

    def run() -> HttpResponseBase:
        close_old_connections()
        try:
            return view(request, **kwargs)
        finally:
            close_old_connections()

    return cast(FastHandler, sync_to_async(run, thread_sensitive=False))


def answered(response: HttpResponse) -> FastHandler:
    """A handler for an answer known at once (an error of the credentials)."""

    async def handler() -> HttpResponse:
        return response

    return handler


def fast_path_possible() -> bool:
    return (
        tuple(settings.MIDDLEWARE) == FAST_MIDDLEWARE
        and not settings.DISALLOWED_USER_AGENTS
        and not settings.PREPEND_WWW
    )


def _unused(request: HttpRequest) -> HttpResponse:
    raise AssertionError("the fast path calls middleware hooks only")


class _LabelledOnce(PrometheusAfterMiddleware):
    """django-prometheus' hooks as they are, each labelled child looked up once: the same
    counters and histograms move (`labels()` takes a lock and builds its key at each call,
    a tenth of a placement's CPU with the child's own increment)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        super().__init__(get_response)
        self._children: dict[tuple[int, tuple[tuple[str, str], ...]], Any] = {}
        self._answers: dict[tuple[Any, ...], tuple[Any, Any, Any, Any]] = {}

    def _transport(self, request: HttpRequest) -> str:
        # Asked by process_request and process_view: request.is_secure() (the settings'
        # proxy header) once per request.
        transport: str | None = getattr(request, "_prometheus_transport", None)
        if transport is None:
            transport = "https" if request.is_secure() else "http"
            request._prometheus_transport = transport  # type: ignore[attr-defined]
        return transport

    def process_request(self, request: HttpRequest) -> None:
        """django-prometheus' own, its two headers read from request.META: request.headers
        is built from every META entry at its first use (4% of a worker's CPU by cProfile)."""
        transport = self._transport(request)
        method = self._method(request)
        self.label_metric(self.metrics.requests_by_method, request, method=method).inc()
        self.label_metric(self.metrics.requests_by_transport, request, transport=transport).inc()
        if request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            self.label_metric(self.metrics.requests_ajax, request).inc()
        content_length = int(request.META.get("CONTENT_LENGTH") or 0)
        self.label_metric(self.metrics.requests_body_bytes, request).observe(content_length)
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: Any) -> Any:
        """django-prometheus' own, in its order; for a rendered answer in one piece (every
        fast-path answer) the four children its labels name are looked up together, once
        per (status, view, method, charset)."""
        rendered = isinstance(response, HttpResponse) and (
            not isinstance(response, SimpleTemplateResponse) or response.is_rendered
        )
        if not rendered or response.streaming or not hasattr(request, "prometheus_after_middleware_event"):
            return super().process_response(request, response)
        method, name = self._method(request), self._get_view_name(request)
        key = (response.status_code, name, method, request.method, response.charset)
        children = self._answers.get(key)
        if children is None:
            metrics, status = self.metrics, str(response.status_code)
            children = (
                self.label_metric(metrics.responses_by_status, request, response, status=status),
                self.label_metric(
                    metrics.responses_by_status_view_method, request, response, status=status, view=name, method=method
                ),
                self.label_metric(metrics.responses_by_charset, request, response, charset=str(response.charset)),
                self.label_metric(
                    metrics.requests_latency_by_view_method, request, response, view=name, method=request.method
                ),
            )
            if len(self._answers) >= RESOLVED_KEPT:
                self._answers.clear()
            self._answers[key] = children
        by_status, by_status_view_method, by_charset, latency = children
        by_status.inc()
        by_status_view_method.inc()
        by_charset.inc()
        self.label_metric(self.metrics.responses_body_bytes, request, response).observe(len(response.content))
        latency.observe(TimeSince(request.prometheus_after_middleware_event))
        return response

    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: Any) -> Any:
        if not labels:
            return metric
        key = (id(metric), tuple(labels.items()))
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= RESOLVED_KEPT:  # labels come from the request: bounded
                self._children.clear()
            child = self._children[key] = metric.labels(**labels)
        return child


# Paths resolved once per URLconf (a placement's path is always the same); bounded.
RESOLVED_KEPT = 1024


class FastPath:
    """ASGI: the routes' requests this path takes, else `app` (Django's ASGI handler)."""

    def __init__(self, app: ASGIHandler, *, routes: tuple[FastRoute, ...]) -> None:
        self.app = app
        self.routes = routes
        self.enabled = fast_path_possible()
        # The middlewares' own objects (they read their settings once, as Django's chain does).
        self.prometheus_before = PrometheusBeforeMiddleware(_unused)
        self.security = SecurityMiddleware(_unused)
        self.frame_options = XFrameOptionsMiddleware(_unused)
        self.common = CommonMiddleware(_unused)
        self.prometheus_after = _LabelledOnce(_unused)
        self._resolver: object = None
        self._resolved: dict[str, ResolverMatch | None] = {}

    def _route(self, scope: Scope) -> tuple[FastRoute, ResolverMatch] | None:
        if not self.enabled or scope["type"] != "http" or scope.get("root_path") or scope.get("query_string"):
            return None
        method, path = scope["method"], scope["path"]
        candidates = [r for r in self.routes if r.method == method and path.startswith(r.prefix)]
        if not candidates:
            return None
        match = self._resolve(path)
        if match is None:
            return None
        for route in candidates:
            if match.url_name == route.url_name:
                return route, match
        return None

    def _resolve(self, path: str) -> ResolverMatch | None:
        """django.urls.resolve(path) (None: Resolver404), kept per path for the URLconf in
        force (override_settings of ROOT_URLCONF clears get_resolver's cache: a new one).
        The resolver is the one Django's handler uses for a request without `urlconf` (no
        middleware of FAST_MIDDLEWARE sets one): get_resolver(), ROOT_URLCONF's; asking
        get_urlconf() (asgiref's Local) cost more than the rest of the lookup."""
        resolver = get_resolver()
        if resolver is not self._resolver:
            self._resolver, self._resolved = resolver, {}
        try:
            return self._resolved[path]
        except KeyError:
            pass
        try:
            match: ResolverMatch | None = resolver.resolve(path)
        except Resolver404:
            match = None
        if len(self._resolved) >= RESOLVED_KEPT:
            self._resolved.clear()
        self._resolved[path] = match
        return match

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routed = self._route(scope)
        if routed is None:
            await self.app(scope, receive, send)
            return
        read = await _body(receive, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if read is None:  # the client went away
            return
        body, complete = read
        if not complete:  # beyond the upload limit: Django spools it to disk and refuses it (400)
            await self.app(scope, _replay(body, receive, more_body=True), send)
            return
        request, handler = self._prepare(scope, body, *routed)
        if request is None or handler is None:
            await self.app(scope, _replay(body, receive), send)
            return
        response = await self._respond(request, handler)
        await _send_response(self.app, response, send)

    def _prepare(
        self, scope: Scope, body: bytes, route: FastRoute, match: ResolverMatch
    ) -> tuple[HttpRequest | None, FastHandler | None]:
        """No side effect: what Django would refuse or redirect is left to it."""
        try:
            request = self.app.request_class(scope, io.BytesIO(body))
            request.get_host()  # as CommonMiddleware: DisallowedHost
            if self.security.process_request(request) is not None:  # the HTTPS redirect
                return None, None
            request.resolver_match = match
            return request, route.prepare(request, **match.kwargs)
        except (UnicodeDecodeError, RequestDataTooBig, SuspiciousOperation):
            return None, None

    async def _respond(self, request: HttpRequest, handler: FastHandler) -> HttpResponse:
        # The request's way in, in MIDDLEWARE's order; its answer's way out, in reverse.
        proxy_headers_trust(request.META)
        self.prometheus_before.process_request(request)
        with correlation_context(request_correlation_id(request)) as correlation_id:
            request.correlation_id = correlation_id  # type: ignore[attr-defined]  # as CorrelationIdMiddleware
            began = time.monotonic()
            match = cast(ResolverMatch, request.resolver_match)  # set by _prepare
            self.prometheus_after.process_request(request)
            self.prometheus_after.process_view(request, match.func, match.args, match.kwargs)
            try:
                response = await handler()
                if isinstance(response, SimpleTemplateResponse):  # DRF's Response: rendered as Django does
                    response = self.prometheus_after.process_template_response(request, response)
                    response = response.render()
            except Exception as exc:  # as Django's handler: the hooks, then handler500
                self.prometheus_after.process_exception(request, exc)
                response = api_debug_error(request, exc) or cast(HttpResponse, response_for_exception(request, exc))
            response = self.prometheus_after.process_response(request, response)
            response = self.frame_options.process_response(request, response)
            response = cast(HttpResponse, self.common.process_response(request, response))  # Content-Length
            private_api_cache_headers(request, response)
            access_log(request, response, began=began)
        response["X-Request-ID"] = correlation_id
        response = self.security.process_response(request, response)
        response = self.prometheus_before.process_response(request, response)
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response


async def _send_response(app: ASGIHandler, response: HttpResponse, send: Send) -> None:
    """ASGIHandler.send_response's messages for an answer in one body chunk without
    cookies (every answer of the fast routes), its headers read from the response's own
    store (Django's walks its mapping view, a key lookup per header); else Django's."""
    content = None if response.streaming or response.cookies else response.content
    if content is None or len(content) > app.chunk_size:
        await app.send_response(response, send)
        return
    headers = [
        (
            name.encode("ascii") if isinstance(name, str) else bytes(name),
            value.encode("latin1") if isinstance(value, str) else bytes(value),
        )
        for name, value in response.headers._store.values()
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": content, "more_body": False})


async def _body(receive: Receive, *, limit: int | None) -> tuple[bytes, bool] | None:
    """The body read so far and whether it is whole; None when the client went away.
    Reading stops once it passes `limit` (DATA_UPLOAD_MAX_MEMORY_SIZE; None: no limit): no
    route takes such a body (Django refuses it), and reading it whole into memory let any
    client, without credentials, make a worker hold a body of any size."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if limit is not None and size > limit:
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive, *, more_body: bool = False) -> Receive:
    """`receive` with the body already read given back first (`more_body`: the rest
    follows from `receive`)."""
    pending = [{"type": "http.request", "body": body, "more_body": more_body}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
