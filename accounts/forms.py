"""Forms of the account pages: shape checks only; credentials, throttling and password
rules stay in accounts.services."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms

from core.errors import ApplicationError, InvalidInput


class ServiceForm(forms.Form):
    """A page form whose errors read like the API's error envelope: the code, the
    message and the per-field errors of the ApplicationError a service raised, or
    `validation_error` when the form itself rejects the input."""

    error_code: str | None = None
    error_message: str | None = None
    error_status: int = 200
    error_retry_after: int | None = None

    def is_valid(self) -> bool:
        valid = super().is_valid()
        if not valid and self.error_code is None:
            self.add_application_error(InvalidInput())
        return valid

    def add_application_error(self, exc: ApplicationError) -> None:
        self.error_code, self.error_message, self.error_status = exc.code, exc.message, exc.status
        self.error_retry_after = exc.retry_after
        for name, messages in (exc.fields or {}).items():
            for message in messages:
                self.add_error(name if name in self.fields else None, message)


# The rules of AUTH_PASSWORD_VALIDATORS, said before a password is refused (the register page
# said none: a new trader met them one refusal at a time).
VALIDATOR_RULES_TEXT = "At least 8 characters, not only digits, not a common password, not like your username."


class LoginForm(ServiceForm):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username"}))
    password = forms.CharField(
        max_length=128, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class RegisterForm(ServiceForm):
    # The same shape as POST /api/auth/register.
    username = forms.RegexField(
        regex=r"^[\w.@+-]+\Z",
        min_length=3,
        max_length=150,
        help_text="3 to 150 characters: letters, digits and @ . + - _",
        error_messages={"invalid": "Use only letters, digits and @ . + - _"},
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    email = forms.EmailField(
        required=False,
        # Without it no reset link can be sent: a forgotten password locks the account for good.
        help_text="Needed to reset a forgotten password: the link is mailed to it.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    password = forms.CharField(
        max_length=128,
        strip=False,
        help_text=VALIDATOR_RULES_TEXT,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_confirm = forms.CharField(
        label="Repeat password",
        max_length=128,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password, confirm = cleaned.get("password"), cleaned.get("password_confirm")
        if password and confirm and password != confirm:
            self.add_error("password_confirm", "The two passwords differ.")
        return cleaned


class ApiKeyCreateForm(ServiceForm):
    """The keys page: the same fields as POST /api/keys, and the password again (creating a
    key that can trade is as sensitive as a login)."""

    label = forms.CharField(max_length=64, help_text="A name to tell your keys apart, e.g. “grid bot”.")
    trade = forms.BooleanField(
        required=False, label="Allow trading", help_text="Without it the key can only read (orders, wallets, markets)."
    )
    password = forms.CharField(
        label="Your password",
        max_length=128,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    # A one-time id of this rendered form (accounts.services.api_key_create_from_form).
    form_id = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["form_id"] = secrets.token_urlsafe(16)


class PasswordChangeForm(ServiceForm):
    """The trader's password: the present one, then the new one twice."""

    password = forms.CharField(
        label="Present password",
        max_length=128,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    new_password = forms.CharField(
        label="New password",
        max_length=128,
        strip=False,
        help_text=VALIDATOR_RULES_TEXT,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    new_password_confirm = forms.CharField(
        label="Repeat the new password",
        max_length=128,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password, confirm = cleaned.get("new_password"), cleaned.get("new_password_confirm")
        if password and confirm and password != confirm:
            self.add_error("new_password_confirm", "The two passwords differ.")
        return cleaned


class PasswordResetRequestForm(ServiceForm):
    email = forms.EmailField(
        help_text="The address you registered with.", widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
