"""Refresh token rotation under concurrency, against a running server (live_server: a real
WSGI server in a thread, each request on its own database connection).

Twelve clients present the same refresh token at the same moment: exactly one gets a new
pair, the others 401, and as they presented a spent token the family is revoked, so the
new token dies too (OAuth 2.1 reuse detection: the server cannot tell the owner from a
thief). Before the fix three or four got 200 and became independent renewable sessions."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
import requests
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import RefreshTokenFamily
from accounts.tokens import token_stored_form
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.postgres  # concurrent writers: SQLite would serialise them anyway

CLIENTS = 12


def _login(base: str, username: str) -> dict[str, str]:
    response = requests.post(f"{base}/api/auth/token", json={"username": username, "password": PASSWORD}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _refresh(base: str, refresh: str) -> requests.Response:
    return requests.post(f"{base}/api/auth/token/refresh", json={"refresh": refresh}, timeout=30)


def _concurrently(base: str, refresh: str) -> list[requests.Response]:
    start = threading.Barrier(CLIENTS)
    answers: list[requests.Response] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()  # its own connection
        try:
            start.wait(timeout=30)
            answer = session.post(f"{base}/api/auth/token/refresh", json={"refresh": refresh}, timeout=30)
            with lock:
                answers.append(answer)
        except BaseException as exc:  # reported below, not lost in the thread
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(answers) == CLIENTS
    return answers


def test_exactly_one_of_twelve_concurrent_refreshes_succeeds(live_server: Any, transactional_db: Any) -> None:
    user = UserFactory()
    base = live_server.url
    pair = _login(base, user.username)
    other_session = _login(base, user.username)
    answers = _concurrently(base, pair["refresh"])
    assert Counter(a.status_code for a in answers) == {200: 1, 401: CLIENTS - 1}
    for refused in (a for a in answers if a.status_code == 401):
        assert refused.json() == {
            "error": {"code": "invalid_token", "message": "The token is invalid, expired or revoked."}
        }
    winner = next(a for a in answers if a.status_code == 200).json()
    # The duplicates were reuse of a spent token: the winner's new token is revoked with its family.
    assert _refresh(base, winner["refresh"]).status_code == 401
    assert _refresh(base, pair["refresh"]).status_code == 401
    winner_row = OutstandingToken.objects.get(token=token_stored_form(winner["refresh"]))
    family = RefreshTokenFamily.objects.get(token__jti=winner_row.jti).family
    members = OutstandingToken.objects.filter(refresh_family__family=family)
    assert members.count() == 2  # the login's token and the one rotation that happened
    assert BlacklistedToken.objects.filter(token__in=members).count() == 2
    # The user's other login is another family: it still refreshes.
    assert _refresh(base, other_session["refresh"]).status_code == 200


def test_logout_racing_a_refresh_leaves_no_live_token(live_server: Any, transactional_db: Any) -> None:
    """Whatever the order, after a refresh and a logout of the same token race, neither
    the old token nor any token rotated from it refreshes."""
    user = UserFactory()
    base = live_server.url
    pair = _login(base, user.username)
    start = threading.Barrier(2)
    answers: dict[str, requests.Response] = {}

    def call(name: str, path: str) -> None:
        start.wait(timeout=30)
        answers[name] = requests.post(f"{base}{path}", json={"refresh": pair["refresh"]}, timeout=30)

    threads = [
        threading.Thread(target=call, args=("refresh", "/api/auth/token/refresh")),
        threading.Thread(target=call, args=("logout", "/api/auth/logout")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers.values()) in ([200, 401], [205, 401])
    if answers["refresh"].status_code == 200:
        assert _refresh(base, answers["refresh"].json()["refresh"]).status_code == 401
    assert _refresh(base, pair["refresh"]).status_code == 401
