from __future__ import annotations

from django.conf import settings
from django.db import models
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

# What an API key may do: read always; trade when its owner allowed it (ApiKey.can_trade).
PERMISSION_READ = "read"
PERMISSION_TRADE = "trade"
PERMISSIONS = (PERMISSION_READ, PERMISSION_TRADE)


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


class ApiKey(models.Model):
    """A key a trader's bot signs requests with (accounts.api_keys). `key` is public (sent as
    X-API-KEY); the secret is kept encrypted (`secret_encrypted`, Fernet with a key derived
    from SECRET_KEY or API_KEY_ENCRYPTION_KEYS), because verifying an HMAC needs the secret
    itself; it is shown to its owner once, at creation. Deleting the row revokes the key."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    key = models.CharField(max_length=64, unique=True)
    secret_encrypted = models.TextField()
    label = models.CharField(max_length=64)
    can_trade = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-id"], name="api_key_user_recent")]

    def __str__(self) -> str:
        return f"{self.label} ({self.key[:8]}…)"

    @property
    def permissions(self) -> list[str]:
        return [PERMISSION_READ, PERMISSION_TRADE] if self.can_trade else [PERMISSION_READ]


class ApiSignatureSeen(models.Model):
    """A signature already accepted, until its window closes: the replay store when the
    cache is per process (the embedded default). Its primary key makes the claim atomic
    across processes; rows past `expires_at` are removed as new ones arrive."""

    signature = models.CharField(max_length=100, primary_key=True)  # "<key id>:<signature>"
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.signature
