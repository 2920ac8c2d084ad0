from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.db import money_sums
from orders.models import Asset, Wallet


@dataclass(frozen=True, slots=True)
class WalletBalance:
    asset: str
    balance: Decimal
    locked: Decimal

    @property
    def available(self) -> Decimal:
        return self.balance - self.locked


_ZERO = (Decimal(0), Decimal(0))


def wallet_list_for_user(*, user_id: int) -> list[WalletBalance]:
    """Every asset with the caller's balance (zero where they hold none); sub-wallets summed."""
    rows = money_sums(Wallet.objects.filter(user_id=user_id), group_by="asset_id", fields=["balance", "locked"])
    return [
        WalletBalance(asset=asset.symbol, balance=rows.get(asset.pk, _ZERO)[0], locked=rows.get(asset.pk, _ZERO)[1])
        for asset in Asset.objects.order_by("symbol")
    ]


def wallet_balance_get(*, user_id: int, asset_symbol: str) -> WalletBalance:
    rows = money_sums(
        Wallet.objects.filter(user_id=user_id, asset__symbol=asset_symbol),
        group_by="asset_id",
        fields=["balance", "locked"],
    )
    balance, locked = next(iter(rows.values()), _ZERO)
    return WalletBalance(asset=asset_symbol, balance=balance, locked=locked)
