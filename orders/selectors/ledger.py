from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.db import money_sums
from orders.models import Asset, Deposit, Wallet


@dataclass(frozen=True, slots=True)
class AssetLedger:
    asset: str
    credited: Decimal
    balances: Decimal

    @property
    def balanced(self) -> bool:
        return self.credited == self.balances


def ledger_check() -> list[AssetLedger]:
    """Per asset: total credited (deposits) against the sum of every balance
    (traders, house, fee account), summed exactly (core.db.money_sums)."""
    credited = money_sums(Deposit.objects.all(), group_by="asset_id", fields=["amount"])
    balances = money_sums(Wallet.objects.all(), group_by="asset_id", fields=["balance"])
    zero = (Decimal(0),)
    return [
        AssetLedger(
            asset=asset.symbol,
            credited=credited.get(asset.pk, zero)[0],
            balances=balances.get(asset.pk, zero)[0],
        )
        for asset in Asset.objects.order_by("symbol")
    ]


@dataclass(frozen=True, slots=True)
class Ledger:
    assets: list[AssetLedger]

    @property
    def balanced(self) -> bool:
        return all(a.balanced for a in self.assets)


def ledger_report() -> Ledger:
    """The ledger check, as the staff endpoint answers it."""
    return Ledger(assets=ledger_check())
