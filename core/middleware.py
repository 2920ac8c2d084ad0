from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousOperation, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers
from django.utils.functional import LazyObject, empty

from core.logging import correlation_context
from core.networks import address_in, forwarded_client
from core.views import bad_request, not_found, server_error

_requests = logging.getLogger("core.requests")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
GetResponse = Callable[[HttpRequest], HttpResponse]

# Headers only a proxy may set: from anyone else they are the client's own words.
_PROXY_HEADERS = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_FORWARDED")


class TrustedProxyMiddleware:
    """Believe X-Forwarded-For and X-Forwarded-Proto only from the proxies in
    TRUSTED_PROXIES (addresses or CIDR blocks). From a trusted proxy, REMOTE_ADDR becomes
    the client it forwarded for; from anyone else the headers are dropped. Everything
    after this middleware (login throttling, rate limits, the metrics allow-list,
    SECURE_PROXY_SSL_HEADER, absolute URLs in pagination links) reads REMOTE_ADDR and
    is_secure() and never sees a header a client forged. First in MIDDLEWARE."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        proxy_headers_trust(request.META)
        return self.get_response(request)


def proxy_headers_trust(meta: dict[str, object]) -> None:
    """TrustedProxyMiddleware's work on a request's META (also core.api.fast)."""
    peer = str(meta.get("REMOTE_ADDR") or "")
    trusted = settings.TRUSTED_PROXIES
    forwarded_for = str(meta.pop("HTTP_X_FORWARDED_FOR", ""))
    if address_in(peer, trusted):
        meta["REMOTE_ADDR"] = forwarded_client(peer=peer, forwarded_for=forwarded_for, trusted=trusted)
    else:
        for header in _PROXY_HEADERS:
            meta.pop(header, None)


class CorrelationIdMiddleware:
    """Adopt a well-formed X-Request-ID or make one; echo it in the response."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with correlation_context(request_correlation_id(request)) as correlation_id:
            request.correlation_id = correlation_id  # type: ignore[attr-defined]  # for django.request's line
            began = time.monotonic()
            response = self.get_response(request)
            access_log(request, response, began=began)
        response["X-Request-ID"] = correlation_id
        return response


def request_correlation_id(request: HttpRequest) -> str | None:
    """The client's X-Request-ID when well formed (else None: a new one is made)."""
    # request.META, not request.headers (built from every META entry): the same header.
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    return incoming if _SAFE_ID.match(incoming) else None


def access_log(request: HttpRequest, response: HttpResponse, *, began: float) -> None:
    """The web's access line, with the request's correlation id (JSON with LOG_FORMAT=json)
    and, once the request was authenticated, its user's id: who placed an order, credited a
    wallet or set a reference price, for support and audit (the line said what, not who)."""
    path = logged_path(request)
    fields: dict[str, object] = {
        "method": request.method,
        "path": path,
        "status": response.status_code,
        "duration_ms": round((time.monotonic() - began) * 1000, 1),
    }
    user_id = request_user_id(request)
    if user_id is not None:
        fields["user_id"] = user_id
    _requests.info("%s %s %s", request.method, path, response.status_code, extra=fields)


# URL arguments that are secrets, by name: a password reset link's token (Django's
# PasswordResetConfirmView, accounts.views.password_reset_set_page) logs in until the new
# password is set, so whoever read the access lines could set it before the trader did.
SECRET_URL_ARGUMENTS = frozenset({"token"})
REDACTED = "[redacted]"


def logged_path(request: HttpRequest, *, unresolved_too: bool = False) -> str:
    """The request's path as the logs write it: a secret URL argument's value replaced. With
    `unresolved_too`, a path Django had not resolved when it answered (a 503, a throttle) is
    resolved here (core.logging.SecretPathFilter; not the access line of every request)."""
    path = request.path
    match = getattr(request, "resolver_match", None)
    if match is None and unresolved_too:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return path
    if match is None:
        return path
    for name in SECRET_URL_ARGUMENTS.intersection(match.kwargs):
        value = match.kwargs[name]
        if isinstance(value, str) and value:
            path = path.replace(value, REDACTED)
    return path


def request_user_id(request: HttpRequest) -> int | None:
    """The id of the user the request was authenticated as (a session, a token, an API
    key: DRF sets it on the request too; the fast path's orders name their principal's,
    accounts.authentication.request_principal), else None. A session's user that nothing
    asked for is not loaded for the log line (a query per request)."""
    principal = request.__dict__.get("principal_user_id")
    if isinstance(principal, int):
        return principal
    user = request.__dict__.get("user")
    if isinstance(user, LazyObject):
        wrapped = user._wrapped
        if wrapped is empty:
            return None
        user = wrapped
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return pk if isinstance(pk, int) else None


class NulByteMiddleware:
    """A NUL byte in the path or a query parameter is refused before any view runs:
    PostgreSQL cannot store or compare text holding one (a DataError, a 500, wherever
    the value met a query: a market symbol, an admin search). A path with one names
    nothing (404); a parameter with one is invalid (400). Both in the API's envelope
    under /api/, as pages elsewhere."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return not_found(request)
        try:
            parameters = request.GET.lists()
        except TooManyFieldsSent as exc:
            # More than DATA_UPLOAD_MAX_NUMBER_FIELDS: answered here rather than raised, because
            # Django's report of the exception (the admins' mail handler, the DEBUG page) reads
            # request.GET again and raises once more, out of the handler: a 500.
            return bad_request(request, exc)
        if any("\x00" in key or any("\x00" in value for value in values) for key, values in parameters):
            return bad_request(request)
        return self.get_response(request)


class PrivateApiCacheMiddleware:
    """API answers depend on who asks: every one varies on Authorization and Cookie, and
    every one that is not an anonymous read (a caller's orders, a token pair, a staff
    report) is `Cache-Control: no-store`, so that no browser or shared cache keeps it.
    Pages answered to a signed-in trader are `no-store` too (private_page_cache_headers)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return private_api_cache_headers(request, self.get_response(request))


def private_api_cache_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """PrivateApiCacheMiddleware's work on an answer (also core.api.fast)."""
    if not request.path.startswith("/api/"):
        return private_page_cache_headers(request, response)
    if "Vary" in response:
        patch_vary_headers(response, _API_VARY)
    else:  # what patch_vary_headers writes then (it parses and joins: every API answer pays)
        response.headers["Vary"] = ", ".join(_API_VARY)
    # DRF sets the user it authenticated (JWT or session) on the underlying request too.
    user = getattr(request, "user", None)
    anonymous_read = (
        request.method in ("GET", "HEAD")
        and "HTTP_AUTHORIZATION" not in request.META
        and not (user is not None and user.is_authenticated)
    )
    if not anonymous_read:
        response.headers.pop("Cache-Control", None)
        # patch_cache_control(response, no_store=True, private=True) on an answer without
        # Cache-Control (just removed) writes exactly this.
        response.headers["Cache-Control"] = _PRIVATE_NO_STORE
    return response


def private_page_cache_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """A page or live fragment answered to a signed-in session (the wallet, the order and fill
    histories, the trade page's balances) is `Cache-Control: no-store, private` unless its view
    said otherwise (never_cache's answer is as strict). Without it the browser kept the wallet
    page after the logout (its back button and cache showed the balances to the next user of
    the machine) and a shared cache was free to keep it."""
    if "Cache-Control" in response:
        return response
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        response.headers["Cache-Control"] = _PRIVATE_NO_STORE
    return response


_API_VARY = ("Authorization", "Cookie")
_PRIVATE_NO_STORE = "no-store, private"


def _serves(path: str, urlconf: str | None) -> bool:
    """Whether a view of its own answers `path`: a catch-all (the API's JSON 404, the
    admin's login-or-404) does not count."""
    try:
        match = resolve(path, urlconf)
    except Resolver404:
        return False
    view = match.func
    return not (getattr(view, "catch_all", False) or getattr(view, "__name__", "") == "catch_all_view")


class CanonicalSlashMiddleware:
    """Every URL has one canonical form, with or without its trailing slash, as config.urls
    declares it; the other form answers a permanent redirect to it, with the query string:
    301 for GET and HEAD, 308 for any other method (the client repeats the method and the
    body). Django's APPEND_SLASH only adds a slash, and refuses a POST under DEBUG.
    Before CommonMiddleware."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        urlconf = getattr(request, "urlconf", None)
        if path != "/" and not _serves(path, urlconf):
            other = path[:-1] if path.endswith("/") else f"{path}/"
            if _serves(other, urlconf):
                target = request.path[: len(request.path) - len(path)] + other
                query = request.META.get("QUERY_STRING", "")
                response = HttpResponsePermanentRedirect(f"{target}?{query}" if query else target)
                if request.method not in ("GET", "HEAD"):
                    response.status_code = 308
                return response
        return self.get_response(request)


class ApiDebugErrorMiddleware:
    """Under DEBUG, Django answers an uncaught exception with its HTML debug page, even
    under /api/; API clients get the envelope (500 `internal_error`) DEBUG or not, and the
    traceback goes to the log (django.request, as without DEBUG). Without DEBUG, handler500
    (core.views.server_error) answers it."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return api_debug_error(request, exception)


def api_debug_error(request: HttpRequest, exception: Exception) -> HttpResponse | None:
    """ApiDebugErrorMiddleware's answer to an uncaught exception (also core.api.fast)."""
    if not (settings.DEBUG and request.path.startswith("/api/")):
        return None
    if isinstance(exception, SuspiciousOperation | BadRequest):
        # Django answers these 400 (handler400), DEBUG or not: a request refused, not a defect.
        return bad_request(request, exception)
    logging.getLogger("django.request").error(
        "Internal Server Error: %s", request.path, exc_info=exception, extra={"status_code": 500}
    )
    return server_error(request)
