from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

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
    (traders, house, fee account). Two aggregate queries, whatever the size."""
    credited = dict(Deposit.objects.values("asset_id").annotate(total=Sum("amount")).values_list("asset_id", "total"))
    balances = dict(Wallet.objects.values("asset_id").annotate(total=Sum("balance")).values_list("asset_id", "total"))
    zero = Decimal(0)
    return [
        AssetLedger(
            asset=asset.symbol, credited=credited.get(asset.pk) or zero, balances=balances.get(asset.pk) or zero
        )
        for asset in Asset.objects.order_by("symbol")
    ]
