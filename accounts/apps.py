from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_save

        from accounts.tokens import password_change_revoke_tokens

        # A password change ends every refresh token of the user (docs/security.md).
        pre_save.connect(
            password_change_revoke_tokens, sender=get_user_model(), dispatch_uid="accounts.password_change"
        )
