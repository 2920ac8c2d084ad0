"""The platform's own accounts (house, fee account) on a database where they do not exist
yet: the first order must not leave them half-created."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from orders.system_accounts import fee_account_user_id, house_user_id, system_accounts_cache_clear
from tests.orders.invariants import assert_invariants
from tests.orders.support import wallet


def _system_accounts_exist() -> bool:
    system_accounts_cache_clear()  # look them up afresh
    users = get_user_model().objects
    names = {"house", "platform-fees"}
    return users.filter(username__in=names).count() == len(names)


@pytest.mark.django_db
def test_a_refused_first_order_does_not_leave_system_accounts_uncommitted(market, trader):
    assert not _system_accounts_exist()
    poor = trader(USDT="1")
    refused = poor.order(side="buy", type="limit", quantity="1", price="2000.00")
    assert refused.json()["error"]["code"] == "insufficient_funds"

    maker = trader(ETH="1")
    taker = trader(USDT="5000")
    maker.order(side="sell", type="limit", quantity="1", price="2000.00")
    assert taker.order(side="buy", type="market", quantity="1").json()["status"] == "filled"

    users = get_user_model().objects
    assert users.filter(pk=fee_account_user_id()).exists()
    assert users.filter(pk=house_user_id()).exists()
    assert wallet(fee_account_user_id(), "USDT", bucket=market.pk).balance == Decimal("4.0")
    assert _system_accounts_exist()
    assert_invariants()


@pytest.mark.django_db(transaction=True)
def test_with_real_commits_the_first_trade_after_a_refused_order_succeeds(market, trader):
    poor = trader(USDT="1")
    assert poor.order(side="buy", type="market", quantity="1").status_code == 400
    maker = trader(ETH="1")
    taker = trader(USDT="5000")
    maker.order(side="sell", type="limit", quantity="1", price="2000.00")
    response = taker.order(side="buy", type="market", quantity="1")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "filled"
    assert _system_accounts_exist()
    assert wallet(fee_account_user_id(), "USDT", bucket=market.pk).balance == Decimal("4.0")
    assert_invariants()
