"""What a page says for an error code or an order's status reason: ONE mapping, code ->
sentence, reused by every page (forms, toasts, the order history). The API keeps
sending codes; pages show the sentence and keep the code in a `title` tooltip."""

from __future__ import annotations

SESSION_EXPIRED = "session_expired"
CSRF_FAILED = "csrf_failed"  # no ApplicationError: Django refused the form's token

SENTENCES: dict[str, str] = {
    # core
    "validation_error": "Some fields are not valid; see the messages below.",
    "invalid_parameter": "A value in the address is not valid.",
    "not_found": "This could not be found.",
    "conflict": "This conflicts with a change made meanwhile; reload and try again.",
    "service_unavailable": "The exchange is busy right now; please try again in a moment.",
    "internal_error": "The request could not be processed.",  # what the pages showed: the error's own message
    # no ApplicationError either: a page's htmx form got no answer it can show (a 500, a proxy's 502)
    "no_answer": (
        "The exchange did not answer, so this may not have gone through:"
        " check your open orders before sending it again."
    ),
    SESSION_EXPIRED: "Your session expired, log in again. Your order was not placed.",
    CSRF_FAILED: (
        "This page's form has expired (you logged in or out in another tab), so nothing was done: reload the page."
    ),
    # accounts
    "username_taken": "This username is already taken; choose another one.",
    "weak_password": "This password is too weak; use a longer, less common one.",
    "password_reset_unavailable": "Password reset by mail is not set up here; ask support to reset your password.",
    "invalid_credentials": "Wrong username or password.",
    "wrong_password": "Wrong password.",
    "throttled": "Too many attempts; wait a few minutes before trying again.",
    "invalid_token": "Your login is no longer valid; log in again.",
    "too_many_api_keys": "You have as many API keys as allowed; delete one first.",
    "api_key_form_resent": (
        "This form was already sent, so no other key was made: the key is in the list (its secret was shown once)."
    ),
    "api_key_not_found": "This API key does not exist (it may have been deleted).",
    "invalid_api_key": "This API key is unknown or was deleted.",
    "invalid_signature": "The request's signature does not match its API key.",
    "signature_expired": "The request's time is too far from the exchange's clock.",
    "replayed_request": "This signed request was already used; sign each request anew.",
    "api_key_read_only": "This API key may only read; it cannot trade.",
    "api_key_not_allowed": "API keys cannot do this; log in instead.",
    "not_authenticated": "Log in first.",
    "permission_denied": "You are not allowed to do this.",
    # orders
    "deposit_reference_reused": "This reference already made another credit, so nothing was credited.",
    "market_not_found": "This market does not exist.",
    "market_inactive": "This market is not accepting orders right now.",
    "order_not_found": "This order does not exist.",
    "order_not_cancellable": "This order is already closed, so it cannot be cancelled.",
    "duplicate_client_order_id": "You already used this client order id for a different order.",
    "order_form_resent": "This order form was already sent, so nothing more was placed: see your open orders.",
    "order_form_other_account": (
        "This page was opened for another account than the one logged in now, so nothing was placed: reload the page."
    ),
    "insufficient_funds": "You do not have enough available funds for this order.",
    "invalid_time_in_force": "This time in force cannot be used with this order type.",
    # Why is the field's own message (a tick, a missing price, a price an order type does
    # not take): a sentence naming one cause contradicted it for the others.
    "invalid_price": "A price was refused: the message under it says why.",
    "invalid_quantity": "The amount was refused: the message under it says why.",
    "invalid_amount": "The amount must be a positive number with at most 8 decimals.",
    "asset_not_found": "This asset does not exist.",
    "user_not_found": "This user does not exist.",
    # revenue
    "stream_not_found": "This revenue stream does not exist.",
    "revenue_event_not_found": "This revenue event does not exist.",
    "event_not_retryable": "This revenue event cannot be retried in its current state.",
    "delivery_batch_not_found": "This delivery batch does not exist.",
    "batch_not_abandonable": "The chain does not yet show that this batch can never pay, so it was not abandoned.",
    "delivery_busy": "The delivery worker is in a cycle; try again in a few seconds.",
    "chain_unavailable": "The chain node did not answer; nothing was changed.",
    # order status reasons (orders/engine/types.py ExpiryReason, and the cancel reasons)
    "fok_not_fillable": "fill or kill: the book could not fill all of it at once, so nothing was filled",
    "ioc_remainder": "immediate or cancel: the part that could not fill at once was cancelled",
    "no_liquidity": "no one was selling or buying at an acceptable price",
    "self_trade_prevention": "it would have traded with your own order",
    "slippage_guard": "the price would have moved more than the slippage guard allows",
    "processing_failed": "the exchange could not process it; nothing was changed",
    "user_cancelled": "cancelled by you",
    # flywheel
    "ttx_not_configured": "The TTX token is not configured on this exchange yet.",
    "competitor_not_found": "This exchange is not in the comparison.",
}


def error_sentence(code: str | None, default: str = "") -> str:
    """The sentence for `code`; `default` (the error's own message) for a code without one,
    and the code itself as a last resort."""
    if not code:
        return default
    return SENTENCES.get(code, default or code.replace("_", " "))
