"""Work of the accounts app done by the Celery worker: periodic (django-celery-beat
schedules it: migrations) and published by the requests."""

from __future__ import annotations

import smtplib

from celery import shared_task

from accounts.password_reset import password_reset_mails_send
from accounts.tokens import refresh_tokens_expired_delete


# Periodic (beat, every REFRESH_TOKENS_FLUSH_INTERVAL_SECONDS): the next beat is the retry.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def refresh_tokens_expired_flush() -> int:
    return refresh_tokens_expired_delete()


# Published by every valid password reset request (accounts.services.user_password_reset_request),
# whether or not an account has the address: the lookup and the mail happen here, so that the
# request's time says nothing. A mail server that cannot be reached is tried again.
@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OSError, smtplib.SMTPException),
    retry_backoff=30,
    max_retries=3,
)
def password_reset_mail_send(*, email: str, domain: str, use_https: bool) -> None:
    password_reset_mails_send(email=email, domain=domain, use_https=use_https)
