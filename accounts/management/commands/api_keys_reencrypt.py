"""manage.py api_keys_reencrypt: every API key secret that only an older key opens (a
fallback of DJANGO_SECRET_KEY, or API_KEY_ENCRYPTION_KEYS past the first) is encrypted again
with the present one. Run it, with the new key in place and the old one still configured,
before dropping the old one (docs/security.md, "Rotating the secret key")."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.services import api_keys_reencrypt


class Command(BaseCommand):
    help = "Encrypt again with the present key the API key secrets only an older key opens."

    def handle(self, *args: Any, **options: Any) -> None:
        done = api_keys_reencrypt()
        self.stdout.write(f"{done} API key secret(s) encrypted again with the present key")
