"""Usernames: stored NFKC-normalised, unique by key (case, width and lookalike characters
folded), and never mixing scripts. "bars" + Cyrillic "\u0430" + "dmin" must not pass for
"barsadmin"."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from accounts.errors import UsernameTaken
from accounts.models import UsernameKey
from accounts.services import user_register
from accounts.usernames import username_fold, username_key, username_mixes_scripts
from tests.factories import PASSWORD, UserFactory

CYRILLIC_A = "\u0430"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("barsadmin", f"bars{CYRILLIC_A}dmin"),
        ("barsadmin", "BarsAdmin"),
        ("barsadmin", "\uff42\uff41\uff52\uff53\uff41\uff44\uff4d\uff49\uff4e"),  # fullwidth
        ("pop", "\u0440\u043e\u0440"),  # all Cyrillic
        ("strasse", "stra\u00dfe"),
        ("barsadmin", "barsadrnin"),  # rn reads as m
        ("trader1", "traderl"),
        ("bob", "b0b"),
    ],
)
def test_lookalikes_share_a_key(one: str, other: str) -> None:
    assert username_key(one) == username_key(other)


@pytest.mark.parametrize(("one", "other"), [("alice", "alice2"), ("admin", "adnin"), ("bob", "rob")])
def test_different_names_have_different_keys(one: str, other: str) -> None:
    assert username_key(one) != username_key(other)


def test_mixed_scripts() -> None:
    assert username_mixes_scripts(f"bars{CYRILLIC_A}dmin")
    assert not username_mixes_scripts("barsadmin")
    assert not username_mixes_scripts("\u0438\u0432\u0430\u043d")  # all Cyrillic is fine
    assert not username_mixes_scripts("trader_42.x@y-z")  # digits and punctuation mix with anything
    assert username_fold(" \uff21lice ") == "alice"


def _register(client: Any, username: str) -> Any:
    return client.post("/api/auth/register", {"username": username, "password": PASSWORD}, format="json")


@pytest.mark.django_db
def test_registration_refuses_lookalikes_of_existing_accounts(api_client: Any) -> None:
    UserFactory(username="barsadmin")  # made without registering: keyed by the next registration
    UserFactory(username="pop")
    mixed = _register(api_client, f"bars{CYRILLIC_A}dmin")
    assert mixed.status_code == 400 and mixed.json()["error"]["code"] == "validation_error"
    assert "username" in mixed.json()["error"]["fields"]
    for lookalike in (
        "BarsAdmin",
        "\uff42\uff41\uff52\uff53\uff41\uff44\uff4d\uff49\uff4e",
        "barsadrnin",
        "\u0440\u043e\u0440",
    ):
        response = _register(api_client, lookalike)
        assert response.status_code == 400, (lookalike, response.content)
        assert response.json()["error"]["code"] == "username_taken"
    assert set(get_user_model().objects.values_list("username", flat=True)) == {"barsadmin", "pop"}


@pytest.mark.django_db
def test_registration_refuses_the_platform_accounts_names_before_they_exist(api_client: Any, settings: Any) -> None:
    # The house and the fee account are made when first needed, found by name: a trader
    # registered as "house" before then became the house (its stock, its fills).
    assert not get_user_model().objects.filter(username__in=["house", "platform-fees"]).exists()
    settings.HOUSE_USERNAME, settings.FEE_ACCOUNT_USERNAME = "house", "platform-fees"
    for name in ("house", "HOUSE", "platform-fees", "\uff48ouse"):
        response = _register(api_client, name)
        assert response.status_code == 400 and response.json()["error"]["code"] == "username_taken", name
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_registration_stores_the_normalised_name(api_client: Any) -> None:
    response = _register(api_client, "\uff46\uff55\uff4c\uff4c")  # fullwidth "full"
    assert response.status_code == 201 and response.json()["username"] == "full"
    assert UsernameKey.objects.get(user__username="full").key == username_key("full")
    assert _register(api_client, "FULL").json()["error"]["code"] == "username_taken"


@pytest.mark.django_db
def test_the_registration_page_applies_the_same_rules(client: Any) -> None:
    UserFactory(username="barsadmin")
    body = {"password": PASSWORD, "password_confirm": PASSWORD, "email": ""}
    response = client.post("/register", {**body, "username": f"bars{CYRILLIC_A}dmin"})
    assert response.status_code == 400
    response = client.post("/register", {**body, "username": "barsadrnin"})
    assert response.status_code == 400 and "username_taken" in response.content.decode()


@pytest.mark.django_db
def test_a_renamed_account_is_keyed_again(api_client: Any) -> None:
    assert _register(api_client, "oldname").status_code == 201
    get_user_model().objects.filter(username="oldname").update(username="newname")
    assert _register(api_client, "NEWNAME").json()["error"]["code"] == "username_taken"
    assert _register(api_client, "oldname").status_code == 201  # the old name is free again


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_lookalike_registrations_let_one_through() -> None:
    names = ["strasse", "stra\u00dfe", "STRASSE", "\uff53trasse"]
    start = threading.Barrier(len(names))
    outcomes: list[str] = []
    lock = threading.Lock()

    def register(name: str) -> None:
        try:
            start.wait(timeout=30)
            user_register(username=name, password=PASSWORD)
            outcome = "created"
        except UsernameTaken:
            outcome = "taken"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=register, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created"] + ["taken"] * (len(names) - 1)
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_a_login_may_spell_the_name_in_another_case_or_width(api_client: Any, client: Any) -> None:
    """Registering "ALICE" is refused while "alice" exists, yet logging in as "ALICE" said
    wrong username or password: a name that differs only in case or width logs in."""
    alice = UserFactory(username="alice")
    for typed in ("ALICE", "Alice", " alice", "\uff41\uff4c\uff49\uff43\uff45"):  # the last fullwidth
        response = api_client.post("/api/auth/token", {"username": typed, "password": PASSWORD}, format="json")
        assert response.status_code == 200, (typed, response.content)
    page = client.post("/login", {"username": "ALICE", "password": PASSWORD})
    assert page.status_code == 302 and client.get("/api/me").json()["id"] == alice.pk
    wrong = api_client.post("/api/auth/token", {"username": "ALICE", "password": "wrong"}, format="json")
    assert wrong.status_code == 401
    # A lookalike of another script is another name, not a spelling.
    cyrillic = api_client.post("/api/auth/token", {"username": "\u0430lice", "password": PASSWORD}, format="json")
    assert cyrillic.status_code == 401


@pytest.mark.django_db
def test_two_accounts_differing_only_in_case_each_need_their_exact_name(api_client: Any) -> None:
    """Made outside the registration (the admin): a spelling that fits both names neither."""
    UserFactory(username="Bob")
    UserFactory(username="bob")
    for typed, status in (("Bob", 200), ("bob", 200), ("BOB", 401)):
        response = api_client.post("/api/auth/token", {"username": typed, "password": PASSWORD}, format="json")
        assert response.status_code == status, (typed, response.content)
