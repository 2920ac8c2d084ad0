"""The lock helpers: exactly the rows asked for, in one statement, in id order."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from orders.locks import lock_wallets_by_key, wallets_lock
from orders.models import Asset, Wallet
from tests.factories import UserFactory, fund, market_create


def _key(wallet: Wallet) -> tuple[int, int, int]:
    return (wallet.user_id, wallet.asset_id, wallet.bucket)


@pytest.mark.django_db
def test_wallets_by_key_are_exactly_the_keys_in_id_order(market):
    user, other = UserFactory(), UserFactory()
    for asset in ("USDT", "ETH"):
        fund(user, asset, "1")
        fund(user, asset, "1", bucket=market.pk)  # same user and asset, another bucket
        fund(other, asset, "1")
    eth, usdt = Asset.objects.get(symbol="ETH"), Asset.objects.get(symbol="USDT")
    keys = {(user.pk, eth.pk, 0), (user.pk, usdt.pk, market.pk), (other.pk, usdt.pk, 0), (other.pk, eth.pk, 7)}
    with CaptureQueriesContext(connection) as captured:
        locked = lock_wallets_by_key(keys=keys)
    assert len(captured) == 1
    # The key without a wallet is absent; no wallet outside the keys is returned.
    assert set(locked) == keys - {(other.pk, eth.pk, 7)}
    assert all(_key(wallet) == key for key, wallet in locked.items())
    ids = [wallet.pk for wallet in locked.values()]
    assert ids == sorted(ids)
    assert lock_wallets_by_key(keys=[]) == {}


@pytest.mark.django_db
def test_missing_wallets_are_created_and_locked(market, django_assert_num_queries):
    user = UserFactory()
    fund(user, "USDT", "5")
    usdt, eth = Asset.objects.get(symbol="USDT"), Asset.objects.get(symbol="ETH")
    with django_assert_num_queries(3):  # lock by key, insert the missing ETH wallet, lock again
        locked = wallets_lock(keys=[(user.pk, usdt.pk, 0), (user.pk, eth.pk, 0)])
    assert locked[(user.pk, usdt.pk, 0)].balance == 5
    assert locked[(user.pk, eth.pk, 0)].balance == 0
    ids = [wallet.pk for wallet in locked.values()]
    assert sorted(ids) == sorted(Wallet.objects.filter(user=user).values_list("pk", flat=True))


def _try_lock_elsewhere(wallet_id: int) -> bool:
    """Whether another connection can lock the wallet row right now."""
    outcome: list[bool] = []

    def run() -> None:
        try:
            with transaction.atomic():
                Wallet.objects.select_for_update(nowait=True).filter(pk=wallet_id).exists()
            outcome.append(True)
        except OperationalError:
            outcome.append(False)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    return outcome == [True]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_keyed_wallets_are_locked_and_their_neighbours_are_not():
    """The fee account's wallet of one market stays free while another market's
    settlement holds the fee wallet of its own: markets never wait on each other."""
    this_market, other_market = market_create("ETH-USDT"), market_create("BTC-USDT")
    user = UserFactory()
    fund(user, "USDT", "1", bucket=this_market.pk)
    fund(user, "USDT", "1", bucket=other_market.pk)
    mine = Wallet.objects.get(user=user, bucket=this_market.pk)
    neighbour = Wallet.objects.get(user=user, bucket=other_market.pk)
    with transaction.atomic():
        lock_wallets_by_key(keys=[_key(mine)])
        assert not _try_lock_elsewhere(mine.pk)
        assert _try_lock_elsewhere(neighbour.pk)
    assert _try_lock_elsewhere(mine.pk)
