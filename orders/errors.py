"""Error codes of the trading app (the contract's codes)."""

from core.errors import ApplicationError, Conflict, NotFound


class MarketNotFound(NotFound):
    code = "market_not_found"
    default_message = "No such market."


class MarketNotFoundInRequest(ApplicationError):
    """An unknown market named in an order body or a query's filter is a 400, not a 404
    (the path names no market)."""

    code = "market_not_found"
    default_message = "No such market."


class AssetNotFound(ApplicationError):
    code = "asset_not_found"
    default_message = "No such asset."


class UserNotFound(ApplicationError):
    code = "user_not_found"
    default_message = "No such user."


class OrderNotFound(NotFound):
    code = "order_not_found"
    default_message = "No such order."


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"
    default_message = "The order is already in a terminal state."


class DuplicateClientOrderId(Conflict):
    code = "duplicate_client_order_id"
    default_message = "This client_order_id was already used with different parameters."


class InsufficientFunds(ApplicationError):
    code = "insufficient_funds"
    default_message = "Not enough available funds for this order."


class InvalidTimeInForce(ApplicationError):
    code = "invalid_time_in_force"
    default_message = "This time in force is not allowed for this order type."


class InvalidPrice(ApplicationError):
    code = "invalid_price"
    default_message = "The price is not valid for this market."


class InvalidQuantity(ApplicationError):
    code = "invalid_quantity"
    default_message = "The quantity is not valid for this market."


class InvalidAmount(ApplicationError):
    code = "invalid_amount"
    default_message = "The amount must be a positive decimal with at most 8 decimal places."


class DepositReferenceReused(Conflict):
    """A staff credit's reference (idempotency key) sent again with another credit."""

    code = "deposit_reference_reused"
    default_message = "This reference names another credit; nothing was credited."


class MarketInactive(ApplicationError):
    code = "market_inactive"
    default_message = "This market is not accepting orders."


class OrderFormResent(Conflict):
    """The pages' order ticket posted a second time (a double click, a resent form)."""

    code = "order_form_resent"
    default_message = "This order ticket was already sent; nothing more was placed."


class OrderFormForAnotherAccount(Conflict):
    """The pages' order ticket rendered for one account, posted once another one logged in
    (in another tab of the same browser)."""

    code = "order_form_other_account"
    default_message = "This order ticket was opened for another account than the one logged in now; nothing was placed."
