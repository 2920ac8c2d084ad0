from __future__ import annotations

import logging
import re
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from accounts.selectors import user_is_system_account
from core.db import money_sums
from core.errors import InvalidInput
from core.money import MAX_AMOUNT, ZERO, amount_refusal, parse_amount
from core.text import staff_reason_clean
from orders.errors import AssetNotFound, DepositReferenceReused, InvalidAmount, UserNotFound
from orders.locks import lock_asset, wallets_lock
from orders.models import DEPOSIT_REFERENCE_MAX_LENGTH, Asset, Deposit, Market, Wallet
from orders.system_accounts import house_user_id

logger = logging.getLogger(__name__)


@transaction.atomic(durable=True)
def wallet_credit(
    *,
    username: str,
    asset_symbol: str,
    amount: object,
    credited_by: User | None = None,
    reference: str | None = None,
    reason: str | None = None,
) -> Wallet:
    """A staff credit: a deposit into a trader's own wallet (bucket 0). Refused for the
    platform's accounts (their money lives in per-market buckets: house_stock_credit), for
    closed accounts, and for the staff member's own account (another one credits it).
    `reference` (the request's idempotency key) makes it once only: see _credit. `reason`
    (optional; blank, too long or with control characters refused) is kept on the deposit."""
    value = _amount_parse(amount)
    reference = _reference_parse(reference)
    why = _reason_parse(reason)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise UserNotFound(fields={"username": ["No such user."]})
    if user_is_system_account(username=username):
        # Bucket 0 is no market's stock: the engine would never use it, yet the balance shown
        # (every bucket) would say the house holds it.
        raise InvalidInput(fields={"username": [SYSTEM_ACCOUNT_REFUSAL]})
    if not user.is_active:
        raise InvalidInput(fields={"username": ["This account is closed: it cannot be credited."]})
    if credited_by is not None and credited_by.pk == user.pk:
        raise InvalidInput(fields={"username": ["You cannot credit your own account: another staff member must."]})
    asset = Asset.objects.filter(symbol=asset_symbol).first()
    if asset is None:
        raise AssetNotFound(fields={"asset": ["No such asset."]})
    return _credit(
        user_id=int(user.pk),
        asset=asset,
        amount=value,
        bucket=0,
        credited_by=credited_by,
        reference=reference,
        reason=why,
    )


CREDIT_REASON_BLANK = "A reason, when given, says something (or leave it out): it is kept on the deposit."
SYSTEM_ACCOUNT_REFUSAL = (
    "A platform account cannot be credited here. Fund the house's stock of one market with "
    "`manage.py house_stock_credit --market SYMBOL --asset ASSET --amount AMOUNT` (docs/operations.md)."
)


@transaction.atomic(durable=True)
def house_stock_credit(
    *,
    market: Market,
    asset_symbol: str,
    amount: object,
    actor: User | None = None,
    reference: str | None = None,
    reason: str | None = None,
) -> Wallet:
    """A deposit into the house's stock of one market (its bucket: the market's id), the
    only stock auto-fill in that market draws on. Recorded as any deposit, so the ledger
    stays balanced; the engine reads the house's wallets in every batch, so the next batch
    of the market fills from it. `reference` and `reason`: as wallet_credit's."""
    value = _amount_parse(amount)
    reference = _reference_parse(reference)
    why = _reason_parse(reason)
    if asset_symbol not in (market.base.symbol, market.quote.symbol):
        raise InvalidInput(
            fields={"asset": [f"{market.symbol} trades {market.base.symbol} and {market.quote.symbol} only."]}
        )
    asset = market.base if asset_symbol == market.base.symbol else market.quote
    wallet = _credit(
        user_id=house_user_id(),
        asset=asset,
        amount=value,
        bucket=int(market.pk),
        credited_by=actor,
        reference=reference,
        reason=why,
    )
    logger.info(
        "house stock credited",
        extra={
            "market": market.symbol,
            "asset": asset.symbol,
            "amount": str(value),
            "actor_id": actor.pk if actor else None,
        },
    )
    return wallet


def deposit_create(*, user_id: int, asset: Asset, amount: Decimal, bucket: int = 0) -> Wallet:
    """A deposit as recorded, with no policy (tests and fixtures build wallets with it):
    staff go through wallet_credit or house_stock_credit."""
    with transaction.atomic():
        return _credit(user_id=user_id, asset=asset, amount=amount, bucket=bucket, credited_by=None)


def _amount_parse(amount: object) -> Decimal:
    value = parse_amount(amount)
    if value is not None and value > 0:
        return value
    reason = amount_refusal(amount) if value is None else "Must be positive."
    # The envelope's message too: the default one speaks of decimal places whatever was wrong.
    raise InvalidAmount(f"Invalid amount. {reason}", fields={"amount": [reason]})


def deposit_reference_valid(*, reference: str) -> bool:
    return REFERENCE_PATTERN.fullmatch(reference) is not None


def _reason_parse(reason: str | None) -> str:
    return "" if reason is None else staff_reason_clean(reason=reason, missing=CREDIT_REASON_BLANK)


def _reference_parse(reference: str | None) -> str | None:
    if reference is None or deposit_reference_valid(reference=reference):
        return reference
    raise InvalidInput(fields={"reference": [DEPOSIT_REFERENCE_REFUSAL]})


REFERENCE_PATTERN = re.compile(rf"[A-Za-z0-9._:-]{{1,{DEPOSIT_REFERENCE_MAX_LENGTH}}}")
DEPOSIT_REFERENCE_REFUSAL = (
    f"1 to {DEPOSIT_REFERENCE_MAX_LENGTH} characters among letters, digits and . _ : - (a UUID, a ticket number)."
)


def _credit(
    *,
    user_id: int,
    asset: Asset,
    amount: Decimal,
    bucket: int,
    credited_by: User | None,
    reference: str | None = None,
    reason: str = "",
) -> Wallet:
    # The asset's row serializes its deposits, so the supply checked here is exact: no
    # balance can then outgrow a column, since all of them together hold the supply.
    lock_asset(asset_id=asset.pk)
    if reference is not None:
        done = Deposit.objects.filter(reference=reference).first()
        if done is not None:
            return _credit_replayed(done, user_id=user_id, asset=asset, amount=amount, bucket=bucket)
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
    try:
        # A savepoint: the same reference credited in another asset meanwhile (its lock is
        # not this one) fails here, on the constraint, and nothing of this credit stays.
        with transaction.atomic():
            Deposit.objects.create(
                user_id=user_id,
                asset=asset,
                bucket=bucket,
                amount=amount,
                created_by=credited_by,
                reference=reference or "",
                reason=reason,
            )
    except IntegrityError:
        if reference is None or not Deposit.objects.filter(reference=reference).exists():
            raise
        raise DepositReferenceReused() from None
    logger.debug("wallet credited", extra={"user_id": user_id, "asset": asset.symbol, "amount": str(amount)})
    return Wallet.objects.select_related("asset").get(pk=wallet.pk)


def _credit_replayed(done: Deposit, *, user_id: int, asset: Asset, amount: Decimal, bucket: int) -> Wallet:
    """The credit a reference already made, sent again (a retried request, a second click):
    answered with its wallet as it is now, nothing credited; another credit under the same
    reference is refused."""
    if (done.user_id, done.asset_id, done.bucket, done.amount) != (user_id, asset.pk, bucket, amount):
        raise DepositReferenceReused()
    logger.info("staff credit sent again: not credited twice", extra={"deposit_id": done.pk, "user_id": user_id})
    return Wallet.objects.select_related("asset").get(user_id=user_id, asset=asset, bucket=bucket)
