"""OpenAPI documentation of the error envelope, declared once for every operation.

The contract answers errors with one envelope (`{"error": {"code", "message", "fields"?}}`)
and fixed statuses. `error_responses_hook` (a drf-spectacular postprocessing hook) adds the
statuses every operation can answer, derived from its view and its parameters:

- 400 when it reads a request body or query parameters (validation, business rules);
- 401 when it authenticates callers (a missing, bad or expired token is refused even on
  public operations, since JWT authentication runs before the permission check);
- 403 when it is staff only or refuses API keys, or when it is unsafe and accepts the
  session (CSRF);
- 404 when it has path parameters (unknown symbol, id, name);
- 429 when it is throttled by its throttle classes;
- 414 on every operation: the web server's limit on the request line.

A throttled operation whose answers carry the rate-limit headers (core.api.throttling.
RateLimitHeaders) documents them on every response a counted request can get (all but
401, 403 and 414, answered before the count), required on its 429, which also carries
`Retry-After`.

Statuses that depend on what the operation does (409 conflicts, a login throttle, 503 when
the platform lacks something) are declared on the view with `error_responses(...)`; the hook
never replaces a response a view declared."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAdminUser

from core.api.permissions import IsAuthenticatedInPerson, IsStaff
from core.api.throttling import operation_rate_limit_headers, operation_throttled

ERROR_COMPONENT = "ErrorEnvelope"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error answer: a machine-readable code, a sentence, and per-field messages.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "example": "insufficient_funds"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "Present only for per-field validation errors.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}
ERROR_DESCRIPTIONS = {
    400: "Invalid input or a business rule refused it (`validation_error`, `invalid_parameter`, ...).",
    401: "No, bad or expired credentials (`not_authenticated`, `invalid_token`, `invalid_credentials`; signed"
    " requests: `invalid_api_key`, `invalid_signature`, `signature_expired`, `replayed_request`).",
    403: "Authenticated but not allowed (`permission_denied`; `api_key_read_only`: the API key has no `trade`"
    " permission; `api_key_not_allowed`: API keys cannot manage keys or reach staff endpoints).",
    404: "Not found or not the caller's (`not_found`, `market_not_found`, `order_not_found`, ...).",
    409: "Conflicts with the current state.",
    429: "Throttled (`throttled`); `Retry-After` says when to try again.",
    503: "Temporarily unavailable.",
}
SAFE_METHODS = {"get", "head", "options"}
URI_TOO_LONG = "URI too long: the request line (path and query) is longer than the web server accepts."


def error_responses(*statuses: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Error envelope responses for `@extend_schema(responses=...)`; `descriptions` by
    `s409="..."` replace the generic sentence."""
    return {
        status: OpenApiResponse(
            response=ERROR_REF, description=descriptions.get(f"s{status}", ERROR_DESCRIPTIONS[status])
        )
        for status in statuses
    }


def _error_response(status: int) -> dict[str, Any]:
    return {"description": ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": ERROR_REF}}}


def _default_statuses(method: str, path: str, operation: dict[str, Any], view_class: type | None) -> list[int]:
    parameters = operation.get("parameters", [])
    statuses = []
    if "requestBody" in operation or any(p.get("in") == "query" for p in parameters):
        statuses.append(400)
    if view_class is not None:
        authentication = list(getattr(view_class, "authentication_classes", []))
        permissions = list(getattr(view_class, "permission_classes", []))
        if authentication:
            statuses.append(401)
        staff_only = any(
            isinstance(p, type) and issubclass(p, (IsAdminUser, IsAuthenticatedInPerson)) for p in permissions
        )
        session = any(isinstance(a, type) and issubclass(a, SessionAuthentication) for a in authentication)
        if staff_only or (session and method not in SAFE_METHODS):
            statuses.append(403)
        if operation_throttled(view_class, method):
            statuses.append(429)
    if "{" in path:
        statuses.append(404)
    return statuses


RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Limit": {
        "description": "Requests the rate allows per window (draft-ietf-httpapi-ratelimit-headers). For the order"
        " and cancel rates, counted in each web process, the share of the rate the answering process allows.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Remaining": {
        "description": "Requests the window still allows after this one (0 on a 429).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Reset": {
        "description": "Seconds (rounded up) until quota comes back: the end of the window, or, for the order and"
        " cancel rates (a sliding window), until the oldest counted request leaves it. On a 429, the same"
        " moment as `Retry-After`.",
        "schema": {"type": "integer", "minimum": 0},
    },
}
RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before sending the request again.",
    "schema": {"type": "integer", "minimum": 1},
}
# Answered before the throttles count the request (credentials, permission, CSRF) or before Django.
NOT_COUNTED_STATUSES = {"401", "403", "414"}


def _rate_limit_headers(responses: dict[str, Any]) -> None:
    for status, response in responses.items():
        if status in NOT_COUNTED_STATUSES or not isinstance(response, dict):
            continue
        headers = response.setdefault("headers", {})
        for name in RATE_LIMIT_HEADERS:
            headers[name] = {"$ref": f"#/components/headers/{name}"}
            if status == "429":
                headers[name] = {**RATE_LIMIT_HEADERS[name], "required": True}
        if status == "429":
            headers["Retry-After"] = {**RETRY_AFTER_HEADER, "required": True}


DELEGATED_SCHEMES = {"ApiKey", "ApiKeyTimestamp", "ApiKeySignature"}  # accounts.api_key_auth.ApiKeyScheme


def _refuses_delegated(view_class: type) -> bool:
    return any(
        isinstance(p, type) and issubclass(p, (IsStaff, IsAuthenticatedInPerson))
        for p in getattr(view_class, "permission_classes", [])
    )


def error_responses_hook(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: document the envelope on every operation."""
    views: dict[tuple[str, str], type] = {}
    for path, _regex, method, callback in generator.endpoints or []:
        view_class = getattr(callback, "cls", None)
        if view_class is not None:
            views[(path, method.lower())] = view_class
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            view_class = views.get((path, method))
            if view_class is not None and _refuses_delegated(view_class):
                # Staff endpoints and key management refuse API keys: not a way in there.
                operation["security"] = [
                    requirement
                    for requirement in operation.get("security", [])
                    if not any(name in DELEGATED_SCHEMES for name in requirement)
                ]
            for status in _default_statuses(method, path, operation, view_class):
                responses.setdefault(str(status), _error_response(status))
            if view_class is not None and operation_rate_limit_headers(view_class, method):
                _rate_limit_headers(responses)
            # Every operation: the web server refuses a request line longer than it reads
            # (gunicorn: 4094 bytes) before any view runs; no body is promised.
            responses.setdefault("414", {"description": URI_TOO_LONG})
            # Keep the statuses in numeric order, as a reader expects them.
            operation["responses"] = dict(sorted(responses.items()))
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    components.setdefault("headers", {}).update(RATE_LIMIT_HEADERS)
    return result


def view_description(view: Any, html: bool = False) -> str:
    """DRF's VIEW_DESCRIPTION_FUNCTION, which OPTIONS answers carry: none. A view's docstring
    is written for the code's readers (orders.api.hot, see as_view, ...); clients read the
    operations' descriptions in the schema, written for them."""
    return ""
