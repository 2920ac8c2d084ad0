"""The single place where errors become the contract's envelope:
{"error": {"code", "message", "fields"?}}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from core.errors import ApplicationError, InternalError

logger = logging.getLogger(__name__)

_DRF_CODES: dict[type[exceptions.APIException], tuple[str, str]] = {
    exceptions.ParseError: ("malformed_request", "The request body is not valid JSON (or names a field twice)."),
    exceptions.NotAuthenticated: ("not_authenticated", "Authentication credentials were not provided."),
    exceptions.AuthenticationFailed: ("invalid_token", "The credentials are not valid."),
    exceptions.PermissionDenied: ("permission_denied", "You are not allowed to do this."),
    exceptions.NotFound: ("not_found", "Not found."),
    exceptions.MethodNotAllowed: ("method_not_allowed", "This method is not allowed here."),
    exceptions.NotAcceptable: ("not_acceptable", "The requested format is not available."),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", "Send JSON (Content-Type: application/json)."),
    exceptions.Throttled: ("throttled", "Too many requests; slow down."),
}


# DRF's SessionAuthentication refusing a session's unsafe request without its CSRF token: the
# contract's code, and a message that says what is missing (it read "You are not allowed to
# do this.", as if the account lacked a permission).
CSRF_FAILED_MESSAGE = (
    "CSRF check failed: a request authenticated by the session must send the csrftoken cookie's "
    "value in the X-CSRFToken header (or authenticate with a token or an API key instead)."
)

# The challenge of every 401 (RFC 9110: a 401 carries WWW-Authenticate), as DRF writes it
# for simplejwt's authentication.
API_CHALLENGE = 'Bearer realm="api"'
# A 503's message when the database went away (restart, failover): here and on the order
# path outside DRF (orders.api.hot).
DATABASE_UNAVAILABLE = "The database is temporarily unavailable; please retry."


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{key}: {msg}" for key, value in detail.items() for msg in _flatten(value)]
    if isinstance(detail, list | tuple):
        return [msg for item in detail for msg in _flatten(item)]
    return [str(detail)]


def _validation_fields(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def envelope_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        set_rollback()
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if exc.status == 401:  # a refused API key or refresh token: the challenge DRF sends for none
            headers["WWW-Authenticate"] = API_CHALLENGE
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status, headers=headers)
    if isinstance(exc, InvalidToken | TokenError):
        return Response(
            error_body("invalid_token", "The token is invalid or expired."),
            status=401,
            headers={"WWW-Authenticate": API_CHALLENGE},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.PermissionDenied) and str(exc.detail).startswith("CSRF Failed"):
        return Response(error_body("permission_denied", CSRF_FAILED_MESSAGE), status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("validation_error", "Some fields are invalid.", _validation_fields(exc.detail)),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.APIException):
        code, message = "error", str(exc.detail)
        for klass, (known_code, known_message) in _DRF_CODES.items():
            if isinstance(exc, klass):
                code, message = known_code, known_message
                break
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait) + 1)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = str(exc.auth_header)  # type: ignore[attr-defined]
        set_rollback()
        return Response(error_body(code, message), status=exc.status_code, headers=headers)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database went away (restart, failover): a clean, retryable answer.
        logger.warning("database unavailable: %s", exc)
        set_rollback()
        return Response(
            error_body("service_unavailable", DATABASE_UNAVAILABLE),
            status=503,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        set_rollback()
        return Response(error_body(InternalError.code, InternalError.default_message), status=InternalError.status)
    return None
