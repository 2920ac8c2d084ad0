from core.errors import ApplicationError, NotFound


class StreamNotFound(ApplicationError):
    code = "stream_not_found"
    default_message = "No such revenue stream."


class InvalidRevenueAmount(ApplicationError):
    code = "invalid_amount"
    default_message = "A revenue amount must be a positive Decimal with at most 8 decimal places."


class RevenueEventNotFound(NotFound):
    code = "revenue_event_not_found"
    default_message = "No such revenue event."


class RevenueEventNotRetryable(ApplicationError):
    code = "event_not_retryable"
    status = 409
    default_message = "Only failed, critical or pending events can be queued again; this one is in flight or delivered."
