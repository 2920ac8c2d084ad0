from __future__ import annotations

from accounts.models import ApiKey


def api_key_list_for_user(*, user_id: int) -> list[ApiKey]:
    """The caller's API keys, newest first; the secrets are not read."""
    return list(ApiKey.objects.filter(user_id=user_id).defer("secret_encrypted").order_by("-id"))
