"""The keys page: create (with the password again), list, delete; the secret shown once."""

from __future__ import annotations

import re

import pytest
from axes.models import AccessAttempt
from django.test import Client, override_settings

from accounts.api_keys import secret_decrypt
from accounts.models import ApiKey
from accounts.services import api_key_create
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_nav_links_to_the_keys_page(page):
    html = page.get("/wallet/").content.decode()
    assert 'href="/keys/"' in html


def test_anonymous_visitors_go_to_the_login_page():
    response = Client().get("/keys/")
    assert response.status_code == 302 and response["Location"].startswith("/login")


def test_create_shows_the_secret_once(page, user):
    response = page.post("/keys/", {"label": "grid bot", "trade": "on", "password": PASSWORD})
    assert response.status_code == 200
    api_key = ApiKey.objects.get(user=user)
    secret = secret_decrypt(api_key.secret_encrypted)
    html = response.content.decode()
    assert secret and secret in html and api_key.key in html and "read + trade" in html
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    again = page.get("/keys/").content.decode()
    assert api_key.key in again and "grid bot" in again and secret not in again


def test_a_read_only_key_by_default(page, user):
    page.post("/keys/", {"label": "reader", "password": PASSWORD})
    assert ApiKey.objects.get(user=user).permissions == ["read"]


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_a_wrong_password_creates_nothing_and_counts_as_a_failed_login(page, user):
    for _ in range(3):
        response = page.post("/keys/", {"label": "x", "password": "wrong"})
        assert response.status_code == 401
        # A password alone was asked: no "Wrong username or password.".
        assert "wrong_password" in response.content.decode() and "Wrong username" not in response.content.decode()
    assert AccessAttempt.objects.filter(username=user.username).exists()
    locked = page.post("/keys/", {"label": "x", "password": PASSWORD})
    assert locked.status_code == 429 and locked["Retry-After"]
    assert not ApiKey.objects.filter(user=user).exists()


def test_delete_own_key_and_not_another_users(page, user):
    mine, _ = api_key_create(user=user, label="mine", permissions=["read"])
    theirs, _ = api_key_create(user=UserFactory(), label="theirs", permissions=["read"])
    response = page.post(f"/keys/{theirs.pk}/delete", follow=True)
    assert "No such API key." in response.content.decode()
    assert ApiKey.objects.filter(pk=theirs.pk).exists()
    response = page.post(f"/keys/{mine.pk}/delete", follow=True)
    assert response.redirect_chain == [("/keys/", 302)]
    assert not ApiKey.objects.filter(pk=mine.pk).exists()
    assert page.post("/keys/abc/delete").status_code == 302


def test_the_same_form_sent_again_creates_no_second_key(page, user):
    """A reload of the answer that showed the secret resends the form (browsers offer it):
    it made a second key whose secret the trader never saw."""
    form_id = re.search(r'name="form_id" value="([^"]+)"', page.get("/keys/").content.decode()).group(1)
    sent = {"label": "grid bot", "trade": "on", "password": PASSWORD, "form_id": form_id}
    assert page.post("/keys/", sent).status_code == 200
    again = page.post("/keys/", sent)
    assert again.status_code == 409 and "api_key_form_resent" in again.content.decode()
    assert ApiKey.objects.filter(user=user).count() == 1
    fresh = re.search(r'name="form_id" value="([^"]+)"', page.get("/keys/").content.decode()).group(1)
    assert fresh != form_id
    assert page.post("/keys/", {**sent, "form_id": fresh}).status_code == 200
    assert ApiKey.objects.filter(user=user).count() == 2


def test_a_refused_form_can_be_sent_again_once_corrected(page, user):
    form_id = re.search(r'name="form_id" value="([^"]+)"', page.get("/keys/").content.decode()).group(1)
    assert page.post("/keys/", {"label": "\u200b", "password": PASSWORD, "form_id": form_id}).status_code == 400
    assert page.post("/keys/", {"label": "bot", "password": PASSWORD, "form_id": form_id}).status_code == 200
    assert ApiKey.objects.filter(user=user).count() == 1
