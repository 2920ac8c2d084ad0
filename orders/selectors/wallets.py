from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from orders.models import Asset, Wallet


@dataclass(frozen=True, slots=True)
class WalletBalance:
    asset: str
    balance: Decimal
    locked: Decimal

    @property
    def available(self) -> Decimal:
        return self.balance - self.locked


def wallet_list_for_user(*, user_id: int) -> list[WalletBalance]:
    """Every asset with the caller's balance (zero where they hold none); sub-wallets summed."""
    rows = {
        asset_id: (balance, locked)
        for asset_id, balance, locked in Wallet.objects.filter(user_id=user_id)
        .values("asset_id")
        .annotate(balance=Sum("balance"), locked=Sum("locked"))
        .values_list("asset_id", "balance", "locked")
    }
    zero = Decimal(0)
    return [
        WalletBalance(
            asset=asset.symbol, balance=rows.get(asset.pk, (zero, zero))[0], locked=rows.get(asset.pk, (zero, zero))[1]
        )
        for asset in Asset.objects.order_by("symbol")
    ]


def wallet_balance_get(*, user_id: int, asset_symbol: str) -> WalletBalance:
    row = Wallet.objects.filter(user_id=user_id, asset__symbol=asset_symbol).aggregate(
        balance=Sum("balance"), locked=Sum("locked")
    )
    return WalletBalance(asset=asset_symbol, balance=row["balance"] or Decimal(0), locked=row["locked"] or Decimal(0))
