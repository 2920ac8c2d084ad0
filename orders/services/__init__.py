"""Write services of the trading app."""

from orders.services.markets import market_reference_price_set
from orders.services.wallets import deposit_create, house_stock_credit, wallet_credit, wallets_lock

__all__ = [
    "deposit_create",
    "house_stock_credit",
    "market_reference_price_set",
    "wallet_credit",
    "wallets_lock",
]
