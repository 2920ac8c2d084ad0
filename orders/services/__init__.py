"""Write services of the trading app."""

from orders.services.markets import market_reference_price_set
from orders.services.wallets import wallet_credit, wallets_lock

__all__ = ["market_reference_price_set", "wallet_credit", "wallets_lock"]
