from __future__ import annotations

from django.conf import settings
from django.db import models
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken


class UsernameKey(models.Model):
    """The key of a username (accounts.usernames.username_key): unique, so that two
    accounts whose names read alike ("barsadmin" and "bars" + Cyrillic "\u0430" + "dmin",
    "Alice" and "ALICE") cannot both exist, whichever registers first and however
    concurrently. Registration writes it; accounts created another way (the admin,
    createsuperuser, seed_demo) are given theirs by the next registration."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="username_key")
    username = models.CharField(max_length=150)  # the name the key was made from: a renamed account is keyed again
    key = models.CharField(max_length=600, unique=True)

    def __str__(self) -> str:
        return self.username


class RefreshTokenFamily(models.Model):
    """The login an outstanding refresh token descends from: a login issues the first
    token of a family, each rotation the next. Presenting a token that was already
    rotated (or logged out) revokes every token of its family (OAuth 2.1 refresh token
    rotation): whoever holds the newest one, the owner or a thief, must log in again."""

    token = models.OneToOneField(
        OutstandingToken, on_delete=models.CASCADE, primary_key=True, related_name="refresh_family"
    )
    family = models.CharField(max_length=64, db_index=True)  # the jti of the login's first token

    def __str__(self) -> str:
        return self.family
