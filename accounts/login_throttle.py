"""One failed-login policy for every door that checks a password.

django-axes guards every call of django.contrib.auth.authenticate(): its backend, first in
AUTHENTICATION_BACKENDS, refuses a locked-out request before the password is even
compared, and its receivers of Django's login signals count failures and clear them. So
POST /api/auth/token, the /login page and the admin's own login form (/admin/login/) share
one count without any of them doing anything but authenticate(request, ...). A door that
checks another secret (an API key's secret, later) uses `login_throttle_check` and
`login_failure_record` below: the same policy, the same count.

The policy (docs/security.md), in this handler:
- per (username, client address): LOGIN_FAILURE_LIMIT failures lock that pair out. The
  owner, from any other address, still logs in: an attacker cannot lock anyone out.
- per client address, across usernames: LOGIN_ADDRESS_FAILURE_LIMIT failures (higher)
  lock the address out: no password spraying over many accounts.
- a series ends LOGIN_FAILURE_WINDOW_SECONDS after its last failure. A successful login
  clears its own (username, address) count, never the address's: logging into one's own
  account does not reset a spray.
- usernames are counted folded (NFKC, case-folded), so "Alice", "ALICE" and fullwidth "\uff41lice"
  share a count; addresses are REMOTE_ADDR after core.middleware.TrustedProxyMiddleware,
  an IPv6 address counted by its /64 (client_ip_address).

Failures live in the database (axes' AccessAttempt rows), shared by every web process
and unaffected by a cache outage. Attempts in progress are counted too: a burst of
concurrent attempts would otherwise all pass the check before any of them is recorded as
a failure (4 workers at 4 failures: 8 passwords compared, not 5). Each attempt reserves
its place in the shared cache (an atomic counter per pair and per address) before the
password is compared, and gives it back once its failure is recorded or its success
cleared the count; with the cache down attempts are only checked against the recorded
failures; the admin lists them (Axes: access attempts) and
`manage.py axes_reset_ip` / `axes_reset_username` unlock by hand."""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.db.models import Max, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone

from accounts.errors import LoginThrottled
from accounts.usernames import username_fold
from core.api.exception_handler import error_body
from core.cache import CACHE_ERRORS, cache_failure_log
from core.networks import client_bucket

# An attempt in progress holds its reservation for at most this long (a process killed
# mid-attempt never gives it back).
ATTEMPT_RESERVATION_SECONDS = 60
# The cache is down, or a reservation expired before it was counted or given back.
_RESERVATION_ERRORS: tuple[type[BaseException], ...] = (*CACHE_ERRORS, ValueError)


def failure_window(request: HttpRequest | None = None) -> timedelta:
    """AXES_COOLOFF_TIME: read at each call, so that the setting can change under test."""
    return timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def failure_limit(request: HttpRequest, credentials: dict[str, Any] | None) -> int:
    """AXES_FAILURE_LIMIT: the per (username, address) limit."""
    return int(settings.LOGIN_FAILURE_LIMIT)


def client_ip_address(request: HttpRequest) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the address failures are counted under, REMOTE_ADDR (the
    client behind a trusted proxy) with an IPv6 address counted by its /64
    (core.networks.client_bucket): axes' own, the bare REMOTE_ADDR, gave a client holding
    a /64 a fresh count per source address, so no limit per address held for it."""
    address = request.META.get("REMOTE_ADDR")
    return client_bucket(str(address)) if address else None


def folded_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the username failures are counted under."""
    raw = (credentials or {}).get("username")
    if raw is None:
        raw = request.POST.get("username")
    return None if raw is None else username_fold(str(raw))[:255]


class LoginThrottleHandler(AxesDatabaseHandler):
    """axes' database handler with two limits instead of one (see the module docstring).
    axes' own lockout test (`is_locked`), its count (`get_failures`) and its reset on a
    successful login (`reset_user_attempts`) are redefined; recording a failure is
    axes' own."""

    def _series(self, request: HttpRequest, credentials: dict[str, Any] | None) -> list[tuple[QuerySet, int]]:
        """(failures still counting, limit) per tier: the pair, then the address."""
        recent = AccessAttempt.objects.filter(
            ip_address=request.axes_ip_address,  # type: ignore[attr-defined]
            attempt_time__gt=get_cool_off_threshold(request),
        )
        username = get_client_username(request, credentials)
        return [
            (recent.filter(username=username), int(settings.LOGIN_FAILURE_LIMIT)),
            (recent, int(settings.LOGIN_ADDRESS_FAILURE_LIMIT)),
        ]

    def _locked_series(self, request: HttpRequest, credentials: dict[str, Any] | None) -> list[QuerySet]:
        return [
            attempts
            for attempts, limit in self._series(request, credentials)
            if (attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0) >= limit
        ]

    def is_locked(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
        return bool(self._locked_series(request, credentials))

    def is_allowed(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
        """authenticate()'s check (axes' backend), before the password is compared: not
        locked, and a place among the attempts the limits still allow, counting the ones
        in progress in other processes."""
        return super().is_allowed(request, credentials) and self._attempt_reserve(request, credentials)

    def _reservation_keys(self, request: HttpRequest, credentials: dict[str, Any] | None) -> list[str]:
        address = str(request.axes_ip_address)  # type: ignore[attr-defined]
        username = str(get_client_username(request, credentials))
        pair = hashlib.sha256(f"{address}\x00{username}".encode()).hexdigest()
        return [f"login-attempts:pair:{pair}", f"login-attempts:address:{hashlib.sha256(address.encode()).hexdigest()}"]

    def _attempt_reserve(self, request: HttpRequest, credentials: dict[str, Any] | None) -> bool:
        taken: list[str] = []
        try:
            tiers = zip(self._series(request, credentials), self._reservation_keys(request, credentials), strict=True)
            for (attempts, limit), key in tiers:
                cache.add(key, 0, ATTEMPT_RESERVATION_SECONDS)
                in_progress = int(cache.incr(key))  # this attempt included
                taken.append(key)
                failures = attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
                if failures + in_progress > limit:
                    _reservations_release(taken)
                    return False
        except _RESERVATION_ERRORS as exc:
            cache_failure_log("login attempts in progress", exc)
            _reservations_release(taken)
            return True
        request.login_attempt_reservations = taken  # type: ignore[attr-defined]
        return True

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        attempts, _limit = self._series(request, credentials)[0]
        return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0

    def user_login_failed(self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
        refused = bool(getattr(request, "axes_locked_out", False))
        super().user_login_failed(sender, credentials, request, **kwargs)
        _reservations_release(getattr(request, "login_attempt_reservations", []))  # counted now
        if request is not None:
            # axes flags the request whose failure reaches the limit as locked out; here that
            # one is still answered as a wrong password, and the next attempt is refused.
            request.axes_locked_out = refused

    def reset_user_attempts(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        _reservations_release(getattr(request, "login_attempt_reservations", []))  # a success
        count, _ = AccessAttempt.objects.filter(
            ip_address=request.axes_ip_address,  # type: ignore[attr-defined]
            username=get_client_username(request, credentials),
        ).delete()
        return count

    def lockout_seconds(self, request: HttpRequest, credentials: dict[str, Any] | None) -> int:
        """An upper bound of the wait: the window after the last failure of each locked tier."""
        window = failure_window(request)
        latest = [
            series.aggregate(last=Max("attempt_time"))["last"] for series in self._locked_series(request, credentials)
        ]
        ends = [last + window for last in latest if last is not None]
        if not ends:
            return 1
        return max(1, math.ceil((max(ends) - timezone.now()).total_seconds()))


def _reservations_release(keys: list[str]) -> None:
    """Gives back an attempt's places, once (the list is emptied)."""
    while keys:
        key = keys.pop()
        try:
            cache.decr(key)
        except _RESERVATION_ERRORS as exc:  # expired, or the cache is down: nothing to give back
            cache_failure_log("login attempts in progress", exc)


def _handler() -> LoginThrottleHandler:
    handler = AxesProxyHandler.get_implementation()
    if not isinstance(handler, LoginThrottleHandler):
        raise TypeError("AXES_HANDLER must be accounts.login_throttle.LoginThrottleHandler")
    return handler


def login_throttle_check(*, request: HttpRequest, username: str) -> None:
    """Raises LoginThrottled (429, Retry-After) when this username or this address is
    locked out. authenticate() does this itself; a door checking another secret calls it
    before comparing."""
    credentials = {"username": username}
    AxesProxyHandler.update_request(request)
    handler = _handler()
    if handler.is_locked(request, credentials):
        raise LoginThrottled(retry_after=handler.lockout_seconds(request, credentials))


def login_refusal_check(*, request: HttpRequest, username: str) -> None:
    """After authenticate() returned None: raises LoginThrottled if axes refused the
    attempt (locked out) rather than the password being wrong."""
    if getattr(request, "axes_locked_out", False):
        credentials = {"username": username}
        raise LoginThrottled(retry_after=_handler().lockout_seconds(request, credentials))


def login_failure_record(*, request: HttpRequest, username: str) -> None:
    """Counts a failed attempt at a door that checks another secret than a password."""
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)


def login_failures_clear(*, request: HttpRequest, username: str) -> None:
    """A successful login clears its (username, address) count (login() does it for the
    pages; the API issues tokens without it)."""
    AxesProxyHandler.update_request(request)
    _handler().reset_user_attempts(request, {"username": username})


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | dict[str, Any] | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: what axes' middleware answers for a locked-out request. The
    API and the /login page answer 429 themselves (kept as they are); any other door, the
    admin's login form, gets the envelope under /api/ and a page elsewhere.

    Run asynchronously (ASGI: uvicorn, gunicorn's uvicorn workers), axes' middleware calls
    this as (request, credentials), without the view's answer: the credentials arrive in
    `original_response` and the answer is made here (the same envelope or page)."""
    if not isinstance(original_response, HttpResponseBase):
        if credentials is None and isinstance(original_response, dict):
            credentials = original_response
        original_response = None
    if original_response is not None and original_response.status_code == 429:
        return original_response
    retry_after = _handler().lockout_seconds(request, credentials)
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body(LoginThrottled.code, LoginThrottled.default_message), status=429)
    else:
        context = {"message": LoginThrottled.default_message, "retry_after": retry_after}
        response = render(request, "accounts/locked_out.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    return response
