from core.errors import ApplicationError, Conflict, NotFound, ServiceUnavailable


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
    default_message = (
        "Only failed, critical or pending events can be queued again; this one is in flight or delivered "
        "(an event in a batch stuck in flight is freed by abandoning its batch)."
    )


class DeliveryBatchNotFound(NotFound):
    code = "delivery_batch_not_found"
    default_message = "No such delivery batch."


class DeliveryBatchNotAbandonable(Conflict):
    code = "batch_not_abandonable"
    default_message = "This delivery batch cannot be abandoned."


class DeliverySenderBusy(Conflict):
    code = "delivery_busy"
    default_message = "The delivery worker is in a cycle; try again in a few seconds."


class ChainNodeUnavailable(ServiceUnavailable):
    code = "chain_unavailable"
    default_message = "The chain node did not answer; nothing was changed."
