"""Mail without a mail server: each message becomes one log record.

Django's console backend writes a message as many plain-text lines on standard output; in
the production topology that broke the one-JSON-object-per-line logs (`LOG_FORMAT=json`)
with every error report of a 5xx and every delivery alert. Set EMAIL_BACKEND to an SMTP
backend to send mail; until then it is read in the logs, whole: one JSON line with
LOG_FORMAT=json, the subject's line followed by the body in text."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger("core.mail")


class LogEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            # JSON lines carry the body as a field; a text line has no fields, so the body
            # follows the subject (make run: a password reset's link is read there).
            text = settings.LOG_FORMAT != "json"
            logger.warning(
                "mail to %s: %s%s",
                ", ".join(message.recipients()),
                message.subject,
                f"\n{message.body}" if text else "",
                extra={"mail_to": message.recipients(), "mail_subject": message.subject, "mail_body": message.body},
            )
        return len(email_messages)
