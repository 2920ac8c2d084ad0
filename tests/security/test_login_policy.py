"""The failed-login policy (accounts/login_throttle.py, docs/security.md), door by door.

An attacker must be able neither to guess one account's password (LOGIN_FAILURE_LIMIT
failures per username and client address), nor to lock its owner out (the owner from
another address is not affected), nor to spray one password over many usernames
(LOGIN_ADDRESS_FAILURE_LIMIT failures per address across usernames). Every door counts
into the same series: POST /api/auth/token, the /login page, the admin's own login form
(driven over HTTP with its CSRF token against a running server) and the hook a future door
uses. The count lives in the database: a second process sees it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.conf import settings
from django.db import connection
from django.test import AsyncClient, RequestFactory, override_settings
from requests.adapters import HTTPAdapter

from accounts.errors import LoginThrottled
from accounts.login_throttle import login_failure_record, login_throttle_check
from tests.factories import PASSWORD, StaffFactory, UserFactory
from tests.security.conftest import api_client, page_client

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 3
ADDRESS_LIMIT = 6
policy = override_settings(LOGIN_FAILURE_LIMIT=LIMIT, LOGIN_ADDRESS_FAILURE_LIMIT=ADDRESS_LIMIT)


def _token(username: str, password: str, address: str = "127.0.0.1") -> Any:
    body = {"username": username, "password": password}
    return api_client().post("/api/auth/token", body, format="json", REMOTE_ADDR=address)


def _refused(response: Any) -> int:
    """The API's 429: the envelope, with Retry-After within the window."""
    assert response.status_code == 429, (response.status_code, response.content[:200])
    assert response.json() == {"error": {"code": "throttled", "message": "Too many failed logins; try again later."}}
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    return retry_after


# --- the policy, through the API ---------------------------------------------------------------------


@policy
def test_one_account_cannot_be_guessed_nor_its_owner_locked_out(db: Any) -> None:
    victim = UserFactory()
    for _ in range(LIMIT):
        assert _token(victim.username, "guess", "198.51.100.7").status_code == 401
    # The attacker's address is done with this account, even with the right password ...
    _refused(_token(victim.username, PASSWORD, "198.51.100.7"))
    # ... while the owner, from their own address, logs in.
    assert _token(victim.username, PASSWORD, "203.0.113.20").status_code == 200


@policy
def test_spraying_one_address_over_many_usernames_is_refused(db: Any) -> None:
    victims = [UserFactory() for _ in range(ADDRESS_LIMIT + 1)]
    for victim in victims[:ADDRESS_LIMIT]:  # one guess per account: never the per-account limit
        assert _token(victim.username, "Summer2026!", "198.51.100.8").status_code == 401
    # The address is locked out for every username, also one it never tried, also with the
    # right password (no oracle while locked).
    _refused(_token(victims[-1].username, PASSWORD, "198.51.100.8"))
    _refused(_token("nobody-at-all", "x", "198.51.100.8"))
    # Other addresses are not affected.
    assert _token(victims[-1].username, PASSWORD, "198.51.100.9").status_code == 200


@policy
def test_one_ipv6_64_is_one_address_for_the_failure_counts(db: Any) -> None:
    """Was a bypass: each IPv6 address had counts of its own, and one server holds a /64
    (2^64 addresses): a new source address per guess escaped both limits."""
    victim = UserFactory()
    for n in range(LIMIT):
        assert _token(victim.username, "guess", f"2001:db8:1:2::{n + 1:x}").status_code == 401
    _refused(_token(victim.username, PASSWORD, "2001:db8:1:2:abcd::9"))
    for n in range(ADDRESS_LIMIT - LIMIT):  # the spray limit counts the /64 too
        assert _token(f"nobody{n}", "guess", f"2001:db8:1:2:{n + 1:x}::1").status_code == 401
    _refused(_token("nobody-else", "guess", "2001:db8:1:2:ffff::1"))
    # The owner, from another /64 (or IPv4), logs in.
    assert _token(victim.username, PASSWORD, "2001:db8:1:3::1").status_code == 200
    assert _token(victim.username, PASSWORD, "198.51.100.30").status_code == 200


@policy
def test_logging_into_ones_own_account_does_not_reset_a_spray(db: Any) -> None:
    mine, victims = UserFactory(), [UserFactory() for _ in range(ADDRESS_LIMIT)]
    for victim in victims[: ADDRESS_LIMIT - 1]:
        assert _token(victim.username, "guess", "198.51.100.10").status_code == 401
    assert _token(mine.username, PASSWORD, "198.51.100.10").status_code == 200
    assert _token(victims[-1].username, "guess", "198.51.100.10").status_code == 401
    _refused(_token(mine.username, PASSWORD, "198.51.100.10"))


@policy
def test_a_success_clears_the_count_of_its_own_username_and_address(db: Any) -> None:
    user = UserFactory()
    for _ in range(LIMIT - 1):
        assert _token(user.username, "typo").status_code == 401
    assert _token(user.username, PASSWORD).status_code == 200
    assert not AccessAttempt.objects.filter(username=user.username.casefold()).exists()
    for _ in range(LIMIT - 1):
        assert _token(user.username, "typo").status_code == 401
    assert _token(user.username, PASSWORD).status_code == 200


@policy
def test_refused_attempts_do_not_extend_the_lockout_nor_grow_the_record(db: Any) -> None:
    user = UserFactory()
    for _ in range(LIMIT):
        _token(user.username, "guess")
    before = list(AccessAttempt.objects.values_list("failures_since_start", "attempt_time", "post_data"))
    for _ in range(20):
        _refused(_token(user.username, "guess"))
    assert list(AccessAttempt.objects.values_list("failures_since_start", "attempt_time", "post_data")) == before


@policy
def test_the_window_ends_the_series(db: Any) -> None:
    user = UserFactory()
    for _ in range(LIMIT):
        _token(user.username, "guess")
    _refused(_token(user.username, PASSWORD))
    # As if the window had passed since the last failure.
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time.replace(year=2000))
    assert _token(user.username, PASSWORD).status_code == 200


def test_the_shipped_policy(db: Any) -> None:
    """No override: the numbers as shipped, documented in docs/security.md."""
    assert settings.LOGIN_FAILURE_LIMIT == 5
    assert settings.LOGIN_ADDRESS_FAILURE_LIMIT == 20
    assert settings.LOGIN_FAILURE_WINDOW_SECONDS == 300
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert "axes.middleware.AxesMiddleware" in settings.MIDDLEWARE


# --- every door, one count ---------------------------------------------------------------------------------


@policy
def test_the_login_page_is_refused_with_a_429_page(db: Any) -> None:
    user = UserFactory()
    page = page_client()
    for _ in range(LIMIT):
        assert page.post("/login", {"username": user.username, "password": "guess"}).status_code == 401
    response = page.post("/login", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "throttled" in response.content.decode()
    assert 0 < int(response["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    assert "_auth_user_id" not in page.session


@policy
def test_a_door_with_another_secret_uses_the_hook(db: Any) -> None:
    """What API-key creation (or any door that checks a secret without authenticate())
    calls: its failures count with the password failures, and its check refuses alike."""
    user = UserFactory()
    request = RequestFactory().post("/api/keys", REMOTE_ADDR="192.0.2.44")
    login_throttle_check(request=request, username=user.username)  # nothing counted yet
    for _ in range(LIMIT - 1):
        login_failure_record(request=RequestFactory().post("/api/keys", REMOTE_ADDR="192.0.2.44"),
                             username=user.username)  # fmt: skip
    assert _token(user.username, "guess", "192.0.2.44").status_code == 401  # the third failure
    with pytest.raises(LoginThrottled) as refused:
        login_throttle_check(request=RequestFactory().post("/api/keys", REMOTE_ADDR="192.0.2.44"),
                             username=user.username.upper())  # fmt: skip
    assert 0 < (refused.value.retry_after or 0) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    _refused(_token(user.username, PASSWORD, "192.0.2.44"))


# --- the admin's login form, over HTTP against a running server ----------------------------------------------


class _FromAddress(HTTPAdapter):
    """Connections from another loopback address: the whole of 127.0.0.0/8 reaches the server."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _browser(address: str = "127.0.0.1") -> requests.Session:
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session


def _admin_login(base: str, username: str, password: str, *, address: str = "127.0.0.1") -> requests.Response:
    """As a browser does it: GET the form, read its CSRF token, POST it back with the cookie."""
    browser = _browser(address)
    form = browser.get(f"{base}/admin/login/?next=/admin/", timeout=10)
    assert form.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None and browser.cookies.get("csrftoken")
    body = {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password, "next": "/admin/"}
    response = browser.post(f"{base}/admin/login/?next=/admin/", data=body, allow_redirects=False, timeout=10)
    response.logged_in = "sessionid" in browser.cookies  # type: ignore[attr-defined]
    return response


@policy
def test_the_admin_login_form_is_guarded(live_server: Any, transactional_db: Any) -> None:
    staff = StaffFactory()
    base = live_server.url
    control = _admin_login(base, staff.username, PASSWORD, address="127.0.0.3")
    assert control.status_code == 302 and control.logged_in  # type: ignore[attr-defined]
    for _ in range(LIMIT):
        wrong = _admin_login(base, staff.username, "guess")
        assert wrong.status_code == 200 and not wrong.logged_in  # type: ignore[attr-defined]
        assert "Please enter the correct username and password" in wrong.text
    refused = _admin_login(base, staff.username, PASSWORD)
    assert refused.status_code == 429 and not refused.logged_in  # type: ignore[attr-defined]
    assert "Too many failed logins" in refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    # The same count locks the API and the page for this address; the owner elsewhere logs in.
    api = requests.post(f"{base}/api/auth/token", json={"username": staff.username, "password": PASSWORD}, timeout=10)
    assert api.status_code == 429 and api.json()["error"]["code"] == "throttled"
    elsewhere = _admin_login(base, staff.username, PASSWORD, address="127.0.0.2")
    assert elsewhere.status_code == 302 and elsewhere.logged_in  # type: ignore[attr-defined]


@policy
def test_api_failures_count_at_the_admin_door(live_server: Any, transactional_db: Any) -> None:
    staff = StaffFactory()
    base = live_server.url
    for _ in range(LIMIT):
        body = {"username": staff.username.upper(), "password": "guess"}  # another spelling, one count
        assert requests.post(f"{base}/api/auth/token", json=body, timeout=10).status_code == 401
    refused = _admin_login(base, staff.username, PASSWORD)
    assert refused.status_code == 429 and not refused.logged_in  # type: ignore[attr-defined]


# --- the count is shared by processes --------------------------------------------------------------------------

FAIL_ELSEWHERE = r"""
import json, sys
import django
django.setup()
from django.test import Client
username, times = sys.argv[1], int(sys.argv[2])
client = Client(REMOTE_ADDR="198.51.100.77")
statuses = [client.post("/api/auth/token", {"username": username, "password": "guess"},
                        content_type="application/json").status_code for _ in range(times)]
print(json.dumps(statuses))
"""


@pytest.mark.postgres
@policy
def test_failures_in_another_process_count_here(transactional_db: Any) -> None:
    """Another web process (a second gunicorn worker) records failures in the database;
    this process refuses the next attempt. A per-process counter would let each worker
    allow LIMIT guesses."""
    user = UserFactory()
    database = connection.settings_dict
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "LOGIN_FAILURE_LIMIT": str(LIMIT)}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", FAIL_ELSEWHERE, user.username, str(LIMIT)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [401] * LIMIT
    _refused(_token(user.username, PASSWORD, "198.51.100.77"))


# --- under ASGI (uvicorn, the web worker's handler) ---------------------------------------------------


@policy
@pytest.mark.django_db(transaction=True)
def test_a_lockout_under_asgi_is_a_429_not_a_500() -> None:
    """django-axes' middleware, run asynchronously (every request of uvicorn / gunicorn's
    uvicorn workers), calls AXES_LOCKOUT_CALLABLE as (request, credentials), without the
    view's answer: the credentials arrived where the answer was expected and every locked-out
    login (API, /login, /admin/login/) was a 500 with Django's HTML page."""
    user = UserFactory()
    client = AsyncClient()
    post = async_to_sync(client.post)
    body = {"username": user.username, "password": "guess"}
    for _ in range(LIMIT):
        assert post("/api/auth/token", body, content_type="application/json").status_code == 401
    _refused(post("/api/auth/token", {**body, "password": PASSWORD}, content_type="application/json"))
    page = post("/login", {"username": user.username, "password": PASSWORD})
    assert page.status_code == 429
    assert "throttled" in page.content.decode()
    assert 0 < int(page["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
