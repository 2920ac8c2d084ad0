"""One logging configuration for every process (core/logging.py): JSON lines carry the
correlation id and the record's fields; the Celery worker and beat use it too."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import logging.config
from typing import Any

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from core.logging import correlation_context, logging_config
from tests.factories import market_create


def _json_handler(config: dict) -> logging.StreamHandler:
    """A handler into a string, as the configuration's console handler formats and filters."""
    configurator = logging.config.DictConfigurator(config)
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(configurator.configure_formatter(dict(config["formatters"]["json"])))
    for name in config["handlers"]["console"]["filters"]:
        handler.addFilter(configurator.configure_filter(dict(config["filters"][name])))
    return handler


def test_json_lines_carry_the_correlation_id_and_the_fields() -> None:
    config = logging_config(log_format="json", level="INFO")
    handler = _json_handler(config)
    logger = logging.getLogger("platform-test")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with correlation_context("req-123"):
            logger.info("order %s placed", 7, extra={"order_id": 7})
        contextvars.Context().run(logger.warning, "outside a request")  # no correlation id set
    finally:
        logger.removeHandler(handler)
    stream = handler.stream
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["correlation_id"] == "req-123" and first["message"] == "order 7 placed"
    assert first["order_id"] == 7 and first["level"] == "INFO" and first["logger"] == "platform-test"
    assert isinstance(first["pid"], int) and first["time"]
    assert second["correlation_id"] == "-"
    assert config["handlers"]["console"]["formatter"] == "json"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(log_format="xml", level="INFO")


def test_celery_logs_through_the_django_configuration(settings) -> None:
    from celery import signals

    import config.celery  # noqa: F401 - connects its receivers

    assert any("_on_logging" in repr(receiver) for receiver in signals.setup_logging.receivers)
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["correlation", "secret_paths"]


@pytest.mark.django_db
def test_djangos_line_for_an_error_answer_carries_the_requests_correlation_id(client) -> None:
    """Django logs a 4xx/5xx answer after the middleware chain returned, outside the
    request's context: that line said "-" where the access line had the id."""
    handler = _json_handler(logging_config(log_format="json", level="INFO"))
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        response = client.get("/api/nowhere", HTTP_X_REQUEST_ID="req-404")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 404 and response["X-Request-ID"] == "req-404"
    [line] = [json.loads(line) for line in handler.stream.getvalue().splitlines()]
    assert line["logger"] == "django.request" and line["correlation_id"] == "req-404", line


@pytest.mark.django_db
def test_djangos_lines_of_a_refused_reset_link_do_not_write_its_token(user) -> None:
    # "Forbidden (CSRF cookie not set.): /account/password/reset/NA/<token>" at WARNING,
    # the request's repr beside it: a live reset link (it sets the password until used) in
    # the logs whenever its page answered 4xx (seen under scripts/serve) or 503.
    token = default_token_generator.make_token(user)
    link = f"/account/password/reset/{urlsafe_base64_encode(force_bytes(user.pk))}/{token}"
    handler = _json_handler(logging_config(log_format="json", level="INFO"))
    loggers = [logging.getLogger(name) for name in ("django.request", "django.security.csrf")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        refused = Client(enforce_csrf_checks=True).post(link, {"new_password1": "x", "new_password2": "x"})
        put = Client().put(link, HTTP_X_REQUEST_ID="req-put")
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert refused.status_code == 403 and put.status_code in (403, 405)
    written = handler.stream.getvalue()
    lines = [json.loads(line) for line in written.splitlines()]
    assert len(lines) >= 2, written
    assert token not in written, written
    assert all("/account/password/reset/" in line["message"] and "[redacted]" in line["message"] for line in lines)
    assert any(line["correlation_id"] == "req-put" for line in lines)  # still read from the request


@pytest.mark.django_db
def test_the_request_line_names_the_authenticated_user_and_no_one_else(user_client, user, client, caplog) -> None:
    """Who did it (an order, a credit, a reference price): the access line said what only."""

    def line(path: str, via: Any) -> logging.LogRecord:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="core.requests"):
            via.get(path)
        (found,) = [record for record in caplog.records if record.name == "core.requests"]
        return found

    assert getattr(line("/api/orders", user_client), "user_id", None) == user.pk  # a JWT
    assert not hasattr(line("/api/markets", client), "user_id")  # anonymous
    client.force_login(user)
    assert getattr(line("/api/orders", client), "user_id", None) == user.pk  # a session
    assert not hasattr(line("/healthz", client), "user_id")  # a session nothing asked for: not loaded


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.core.urls_with_a_failing_endpoint")
def test_a_503_answer_mails_no_one_while_a_500_still_mails_the_admins(settings, user_client, client, tmp_path) -> None:
    """Django mails ADMINS on every 5xx (its `django` logger's AdminEmailHandler). A 503 is
    the platform's answer to an outage it knows and alerts (no engine answering, the
    database away), sent to every client retrying meanwhile: one error report each, ~6 ms
    of the web worker each (on the event loop of core.api.fast), was a storm of mails for
    each engine restart (263 for 263 answers in a failover drill). A 500 is a bug: mailed."""
    settings.ENGINE_TRANSPORT = "zmq"
    settings.ENGINE_SHARDS = f"main=*@ipc://{tmp_path}/no-engine.sock"  # none bound: 503
    market_create("ETH-USDT")
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}
    answer = user_client.post("/api/orders", body, format="json")
    assert answer.status_code == 503 and answer["Retry-After"] == "1", answer.content
    assert mail.outbox == []
    client.raise_request_exception = False
    assert client.get("/api/failing").status_code == 500
    [report] = mail.outbox
    assert report.subject.endswith("Internal Server Error: /api/failing"), report.subject
