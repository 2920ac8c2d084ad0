from __future__ import annotations

import logging
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from core.db import money_sums
from core.money import MAX_AMOUNT, ZERO, parse_amount
from orders.errors import AssetNotFound, InvalidAmount, UserNotFound
from orders.locks import lock_asset, wallets_lock
from orders.models import Asset, Deposit, Wallet

logger = logging.getLogger(__name__)


@transaction.atomic(durable=True)
def wallet_credit(
    *,
    username: str,
    asset_symbol: str,
    amount: object,
    bucket: int = 0,
    credited_by: User | None = None,
) -> Wallet:
    """A deposit: money enters the ledger, recorded so that credited == sum of balances."""
    value = parse_amount(amount)
    if value is None or value <= 0:
        raise InvalidAmount(fields={"amount": ["Must be a positive decimal with at most 8 decimal places."]})
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise UserNotFound(fields={"username": ["No such user."]})
    asset = Asset.objects.filter(symbol=asset_symbol).first()
    if asset is None:
        raise AssetNotFound(fields={"asset": ["No such asset."]})
    return _credit(user_id=int(user.pk), asset=asset, amount=value, bucket=bucket, credited_by=credited_by)


def _credit(*, user_id: int, asset: Asset, amount: Decimal, bucket: int, credited_by: User | None) -> Wallet:
    # The asset's row serializes its deposits, so the supply checked here is exact: no
    # balance can then outgrow a column, since all of them together hold the supply.
    lock_asset(asset_id=asset.pk)
    (supply,) = money_sums(Deposit.objects.filter(asset=asset), group_by="asset_id", fields=["amount"]).get(
        asset.pk, (ZERO,)
    )
    if supply + amount > MAX_AMOUNT:
        raise InvalidAmount(
            f"The ledger holds at most {MAX_AMOUNT} {asset.symbol} in all; {supply} are credited already.",
            fields={"amount": [f"At most {MAX_AMOUNT - supply}."]},
        )
    key = (user_id, asset.pk, bucket)
    wallet = wallets_lock(keys=[key])[key]
    wallet.balance += amount  # in Decimal: SQL arithmetic on SQLite's text columns would be floating point
    wallet.save(update_fields=["balance", "updated_at"])
    Deposit.objects.create(user_id=user_id, asset=asset, bucket=bucket, amount=amount, created_by=credited_by)
    logger.debug("wallet credited", extra={"user_id": user_id, "asset": asset.symbol, "amount": str(amount)})
    return Wallet.objects.select_related("asset").get(pk=wallet.pk)
