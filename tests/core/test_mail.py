"""Mail without a mail server (core.mail.LogEmailBackend): read in the logs, whole. The JSON
form is tests/core/test_production_settings.py's; here the text form of `make run`."""

from __future__ import annotations

import logging

from django.core.mail import EmailMessage

from core.mail import LogEmailBackend


def test_a_text_log_line_carries_the_body(settings, caplog):
    """make run logs text: the body (a password reset's link) was only a field, which the
    text format does not print, so the link could not be read anywhere."""
    settings.LOG_FORMAT = "text"
    message = EmailMessage("Set a new password", "Set it here: http://x/reset/abc/", to=["alice@localhost"])
    with caplog.at_level(logging.WARNING, logger="core.mail"):
        assert LogEmailBackend().send_messages([message]) == 1
    [record] = caplog.records
    assert record.getMessage() == "mail to alice@localhost: Set a new password\nSet it here: http://x/reset/abc/"


def test_a_json_line_carries_the_body_as_a_field_only(settings, caplog):
    settings.LOG_FORMAT = "json"
    message = EmailMessage("Alert", "body text", to=["ops@localhost"])
    with caplog.at_level(logging.WARNING, logger="core.mail"):
        LogEmailBackend().send_messages([message])
    [record] = caplog.records
    assert record.getMessage() == "mail to ops@localhost: Alert" and record.mail_body == "body text"  # type: ignore[attr-defined]
