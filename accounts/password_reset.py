"""The worker's half of a password reset request (accounts.services.user_password_reset_request
publishes accounts.tasks.password_reset_mail_send for every valid address): the accounts
looked up and mailed here, so that the request's time says nothing of them."""

from __future__ import annotations

from django.contrib.auth.forms import PasswordResetForm


def password_reset_mails_send(*, email: str, domain: str, use_https: bool) -> None:
    """The worker's half of user_password_reset_request: a link to each active account
    registered with `email` that has a usable password (Django's PasswordResetForm), for
    the site at `domain` (the host the request was made to, as ALLOWED_HOSTS accepted it)."""
    form = PasswordResetForm({"email": email})
    if not form.is_valid():
        return
    form.save(
        domain_override=domain,
        use_https=use_https,
        subject_template_name="accounts/password_reset_subject.txt",
        email_template_name="accounts/password_reset_email.txt",
    )
