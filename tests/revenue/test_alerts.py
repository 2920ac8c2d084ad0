"""An alert that could not be handed over says so: a webhook that answers an error, or a
mail server that refuses the message, is a warning in the logs, never silence."""

from __future__ import annotations

import logging
import smtplib

import pytest
import requests
from django.core.mail.backends.base import BaseEmailBackend

import revenue.alerts as alerts
from revenue.alerts import alert_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """An alert, sent as it is after the commit of what decided it."""

    def alert(kind: str, subject: str) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            alert_send(kind=kind, subject=subject, details={})

    return alert


def answering(status: int):
    def post(url, json, timeout):
        response = requests.Response()
        response.status_code = status
        response.url = url
        return response

    return post


def warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "revenue.alerts" and r.levelno == logging.WARNING]


@pytest.fixture
def webhook(settings, monkeypatch):
    settings.ALERT_WEBHOOK_URL = "https://alerts.example.com/hook"


def test_a_webhook_answering_an_error_is_a_warning(webhook, send, monkeypatch, caplog):
    """requests.post does not raise on a 4xx/5xx: a pager that refused every alert (a
    rotated token, a moved URL) went unnoticed, the alert counted as sent."""
    monkeypatch.setattr(alerts.requests, "post", answering(503))
    send("delivery_paused", "On-chain delivery paused: node_unreachable")
    (warning,) = warnings(caplog)
    assert warning.getMessage() == "alert webhook refused the alert"
    assert warning.kind == "delivery_paused" and warning.status == 503
    assert "alerts.example.com" not in str(warning.__dict__)  # a hook's URL often holds its secret


def test_a_webhook_that_takes_the_alert_logs_nothing_more(webhook, send, monkeypatch, caplog):
    monkeypatch.setattr(alerts.requests, "post", answering(204))
    send("delivery_paused", "On-chain delivery paused: node_unreachable")
    assert warnings(caplog) == []


class RefusingMailServer(BaseEmailBackend):
    """As Django's SMTP backend does with a server that refuses: raises unless told to fail silently."""

    def send_messages(self, email_messages):
        if self.fail_silently:
            return 0
        raise smtplib.SMTPAuthenticationError(535, b"authentication failed")


def test_a_mail_server_refusing_the_alert_is_a_warning(settings, send, caplog):
    """mail_admins(fail_silently=True) swallowed the SMTP error without a line."""
    settings.ALERT_WEBHOOK_URL = ""
    settings.ADMINS = [("ops", "ops@example.com")]
    settings.EMAIL_BACKEND = f"{__name__}.RefusingMailServer"
    send("revenue_events_critical", "1 revenue event(s): on-chain delivery gave up")
    (warning,) = warnings(caplog)
    assert warning.getMessage() == "alert mail not sent"
    assert warning.kind == "revenue_events_critical" and "authentication failed" in warning.error


def test_an_unreachable_webhook_is_a_warning_that_keeps_its_secret(settings, send, monkeypatch, caplog):
    """The warning carried the traceback, whose message names the URL's path: a Slack-style
    hook's secret went into every log line of an outage (the settings hide it from error
    reports for that reason: core.error_reports.SettingsSafeExceptionReporterFilter)."""
    settings.ALERT_WEBHOOK_URL = "https://hooks.example.com/services/T000/B000/webhook-secret"

    def unreachable(url, json, timeout):
        raise requests.ConnectionError(
            "HTTPSConnectionPool(host='hooks.example.com', port=443): Max retries exceeded with url: "
            "/services/T000/B000/webhook-secret (Caused by NewConnectionError('Connection refused'))"
        )

    monkeypatch.setattr(alerts.requests, "post", unreachable)
    send("delivery_paused", "On-chain delivery paused: node_unreachable")
    (warning,) = warnings(caplog)
    assert warning.getMessage() == "alert webhook unreachable" and warning.kind == "delivery_paused"
    assert warning.error == "ConnectionError"
    assert "webhook-secret" not in logging.Formatter().format(warning) + str(warning.__dict__)
