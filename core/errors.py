"""One error hierarchy for the whole platform. Services raise these; a single
handler (core.api.exception_handler) turns them into the contract's envelope."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence


class ApplicationError(Exception):
    """A business or validation error with a machine-readable code and an HTTP status."""

    code: str = "application_error"
    status: int = 400
    default_message: str = "The request could not be completed."

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: Mapping[str, Sequence[str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.fields = {name: list(errors) for name, errors in fields.items()} if fields else None
        self.retry_after = retry_after  # seconds, sent as Retry-After (429, 503)
        super().__init__(self.message)


class InvalidInput(ApplicationError):
    code = "validation_error"
    default_message = "Some fields are invalid."


UNKNOWN_FIELD = "Unknown field: this request does not take it."


def unknown_fields(data: Mapping[object, object], *, known: Collection[str]) -> dict[str, list[str]]:
    """The members of a request body that name no field of the request, each with its
    message (InvalidInput's `fields`): a misspelled optional field (`timeInForce`, `symbol`)
    is refused rather than dropped, which would carry out another request than the one
    meant (a limit order resting GTC instead of FOK, every order cancelled instead of one
    market's)."""
    return {str(name): [UNKNOWN_FIELD] for name in data if name not in known}


class InvalidParameter(ApplicationError):
    code = "invalid_parameter"
    default_message = "A query parameter is invalid."


class NotFound(ApplicationError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class Conflict(ApplicationError):
    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state."


class ServiceUnavailable(ApplicationError):
    code = "service_unavailable"
    status = 503
    default_message = "The service is temporarily unavailable; please retry."


class InternalError(ApplicationError):
    """An unexpected failure (a defect, a database error): the contract's 500, which says
    nothing of the cause (it goes to the log)."""

    code = "internal_error"
    status = 500
    default_message = "The request could not be processed."
