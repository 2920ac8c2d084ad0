"""A stateful property test of the order API (issue 10): Hypothesis drives three traders in
two markets (ETH-USDT and BTC-USDT, sharing the USDT wallet) through DRF's APIClient with
limit GTC/IOC/FOK and market IOC/FOK orders at random sides, prices and quantities, valid
and invalid (off the grid, negative, non-numeric, huge, NaN, a GTC market order, an unknown
market), cancels of random orders (their own and other traders'), repeated
`client_order_id`s and deposits through the staff API.

After every step, checked against a model the test keeps itself:
- the API answered only documented statuses, never a 5xx, and every error in the envelope;
- the ledger balances: per asset, the sum of all balances (traders, house, fee account)
  equals what the test deposited; no balance is negative and locked <= balance;
- every trader's locked funds equal what their live orders may still spend, computed here
  from the orders' terms (a sell: its unfilled quantity; a limit buy: ceil(quantity x price)
  plus the full taker fee on it, less what its fills already spent);
- filled <= quantity; a FOK order is filled or expired with nothing filled; IOC, market and
  FOK orders are never left open; a refused order created nothing and locked nothing;
- and the platform's own invariants (tests/orders/invariants.py).

Each example runs inside a savepoint of the test's transaction, rolled back at its end, so
examples never see each other's orders or money (on SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from orders.models import LIVE_STATUSES, Order, Wallet
from orders.sequencer.transport import in_process_engine_reset
from orders.system_accounts import system_accounts_cache_clear
from tests.factories import StaffFactory, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import Trader, fund_house, trader_create

REPORT = Path(django_settings.VAR_DIR) / "hostile" / "stateful.json"
EIGHT_DP = Decimal("0.00000001")
TAKER_FEE_BPS = Decimal(django_settings.TAKER_FEE_BPS)


@dataclass(frozen=True)
class MarketSpec:
    symbol: str
    base: str
    reference: Decimal
    lot: Decimal  # quantities are multiples of it (several steps of the market)


MARKETS = (
    MarketSpec("ETH-USDT", "ETH", Decimal("2000.00"), Decimal("0.05")),
    MarketSpec("BTC-USDT", "BTC", Decimal("60000.00"), Decimal("0.002")),
)
ASSETS = ("USDT", "ETH", "BTC")
HOLDINGS = {"USDT": "12000", "ETH": "2", "BTC": "0.06"}
# Off the grid, zero, negative, not a number, out of any range: all must be a clean 400.
BAD_AMOUNTS: tuple[Any, ...] = ("0", "-1", "0.000000001", "abc", "NaN", "Infinity", "1e400", "", True, [], {"v": 1})

PLACE_CODES = {
    "validation_error",
    "invalid_price",
    "invalid_quantity",
    "invalid_time_in_force",
    "insufficient_funds",
    "market_not_found",
}


def _ceil8(value: Decimal) -> Decimal:
    return value.quantize(EIGHT_DP, rounding=ROUND_CEILING)


def _floor8(value: Decimal) -> Decimal:
    return value.quantize(EIGHT_DP, rounding=ROUND_FLOOR)


def buy_lock(quantity: Decimal, price: Decimal) -> Decimal:
    """docs/matching.md, Funds locking: ceil_8dp(quantity x price) + the full taker fee on it."""
    notional = _ceil8(quantity * price)
    return notional + _floor8(notional * TAKER_FEE_BPS / Decimal(10_000))


def expected_locks(user_id: int) -> dict[str, Decimal]:
    """What each of the user's live orders may still spend, from its terms and what remains of it."""
    expected = dict.fromkeys(ASSETS, Decimal(0))
    live = Order.objects.filter(user_id=user_id, status__in=LIVE_STATUSES).select_related(
        "market__base", "market__quote"
    )
    for order in live:
        if order.side == "sell":
            expected[order.market.base.symbol] += order.quantity - order.filled_quantity
        else:
            assert order.type == "limit" and order.price is not None, f"order {order.pk} is live: {order.type}"
            # A resting buy holds its remainder's lock, no more (docs/matching.md, Funds locking).
            expected[order.market.quote.symbol] += buy_lock(order.quantity - order.filled_quantity, order.price)
    return expected


@dataclass
class Stats:
    requests: int = 0
    examples: int = 0
    steps: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)


STATS = Stats()


def amount(value: Decimal) -> str:
    return f"{value.normalize():f}"


def canonical(body: dict[str, Any]) -> dict[str, Any]:
    """The order's parameters with the contract's defaults filled in, as the server compares
    a repeated client_order_id."""
    default_tif = "GTC" if body["type"] == "limit" else "IOC"
    return {**body, "time_in_force": body.get("time_in_force") or default_tif, "stp": body.get("stp") or "skip"}


class OrderApiMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        # Everything an example does is rolled back at its end (teardown).
        self.savepoint = transaction.savepoint()
        system_accounts_cache_clear()
        in_process_engine_reset()  # its books are of the data rolled back with the example
        STATS.examples += 1
        self.credited = {
            asset: Wallet.objects.filter(asset__symbol=asset).aggregate(s=Sum("balance"))["s"] or Decimal(0)
            for asset in ASSETS
        }
        for spec in MARKETS:
            market = market_create(spec.symbol, reference_price=str(spec.reference))
            # House inventory, so market orders meet the auto-fill as well as the book.
            fund_house(market, base=amount(spec.lot * 4), quote="1000")
            self.credited[spec.base] += spec.lot * 4
            self.credited["USDT"] += Decimal(1000)
        self.traders: list[Trader] = []
        for _ in range(3):
            self.traders.append(trader_create(**HOLDINGS))
            for asset, held in HOLDINGS.items():
                self.credited[asset] += Decimal(held)
        self.staff = APIClient()
        staff: Any = StaffFactory()
        self.staff.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(staff).access_token}")
        self.owner: dict[str, int] = {}  # order id -> trader index
        self.client_ids: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {}

    def teardown(self) -> None:
        transaction.savepoint_rollback(self.savepoint)
        system_accounts_cache_clear()
        in_process_engine_reset()

    # --- helpers -------------------------------------------------------------------

    def _send(self, client: APIClient, path: str, body: dict[str, Any] | None, allowed: set[int]) -> Any:
        response = client.post(path, body, format="json")
        STATS.requests += 1
        STATS.statuses[str(response.status_code)] += 1
        assert response.status_code in allowed, (
            f"POST {path} {body}: {response.status_code} not in {sorted(allowed)}: {response.content[:500]!r}"
        )
        payload: Any = response.json() if response.content else None
        if response.status_code >= 400:
            error = payload["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str), payload
        return response, payload

    def _wallets(self, index: int) -> dict[tuple[str, int], tuple[Decimal, Decimal]]:
        return {
            (symbol, bucket): (balance, locked)
            for symbol, bucket, balance, locked in Wallet.objects.filter(
                user_id=self.traders[index].user.pk
            ).values_list("asset__symbol", "bucket", "balance", "locked")
        }

    def _place(self, index: int, body: dict[str, Any]) -> Any:
        trader = self.traders[index]
        body = {key: value for key, value in body.items() if value is not None}
        before_wallets = self._wallets(index)
        before_orders = Order.objects.filter(user_id=trader.user.pk).count()
        client_order_id = body.get("client_order_id")
        previous = self.client_ids.get((index, client_order_id)) if client_order_id else None
        allowed = {201, 400}
        if previous is not None:
            allowed = {200} if canonical(previous[1]) == canonical(body) else {400, 409}
        response, payload = self._send(trader.api, "/api/orders", body, allowed)
        if response.status_code >= 400:
            code = payload["error"]["code"]
            assert code in PLACE_CODES | {"duplicate_client_order_id"}, payload
            # A refused order creates nothing and locks nothing.
            assert Order.objects.filter(user_id=trader.user.pk).count() == before_orders, payload
            assert self._wallets(index) == before_wallets, f"{code} moved money"
            STATS.outcomes[f"refused:{code}"] += 1
            return multiple()
        if response.status_code == 200:
            assert previous is not None and payload["id"] == previous[0], "a repeat must return the original order"
            STATS.outcomes["repeat"] += 1
            return multiple()
        self._check_order(payload, body)
        self.owner[payload["id"]] = index
        if client_order_id:
            self.client_ids[(index, client_order_id)] = (payload["id"], body)
        STATS.outcomes[f"{payload['type']}:{payload['time_in_force']}:{payload['status']}"] += 1
        return payload["id"]

    @staticmethod
    def _check_order(order: dict[str, Any], body: dict[str, Any]) -> None:
        quantity, filled = Decimal(order["quantity"]), Decimal(order["filled_quantity"])
        assert Decimal(0) <= filled <= quantity, order
        assert Decimal(order["remaining_quantity"]) == quantity - filled, order
        assert sum((Decimal(f["quantity"]) for f in order["fills"]), Decimal(0)) == filled, order
        assert order["status"] in {"open", "partially_filled", "filled", "expired"}, order
        tif, kind = order["time_in_force"], order["type"]
        assert tif == (body.get("time_in_force") or ("GTC" if kind == "limit" else "IOC")), order
        if tif == "FOK":
            assert order["status"] in {"filled", "expired"}, order
            assert order["status"] == "filled" or filled == 0, f"FOK partly filled: {order}"
        if tif == "IOC" or kind == "market":
            assert order["status"] not in {"open", "partially_filled"}, f"{kind} {tif} left resting: {order}"
        if order["status"] == "expired":
            assert order["status_reason"] in {
                "fok_not_fillable",
                "ioc_remainder",
                "no_liquidity",
                "slippage_guard",
                "self_trade_prevention",
            }, order

    # --- rules ---------------------------------------------------------------------

    @rule(
        target=orders,
        trader=st.integers(0, 2),
        spec=st.sampled_from(MARKETS),
        side=st.sampled_from(["buy", "sell"]),
        ticks=st.integers(-3, 3),
        lots=st.sampled_from([1, 2, 3, 5, 10, 40, 150]),  # 150 lots is more than a trader holds
        tif=st.sampled_from([None, "GTC", "IOC", "FOK"]),
        stp=st.sampled_from([None, "skip", "expire_taker", "expire_maker", "expire_both"]),
        client_order_id=st.sampled_from([None, None, None, "a", "b"]),
    )
    def place_limit(
        self,
        trader: int,
        spec: MarketSpec,
        side: str,
        ticks: int,
        lots: int,
        tif: str | None,
        stp: str | None,
        client_order_id: str | None,
    ) -> Any:
        # Prices in steps of 0.5% around the reference, so orders cross and rest.
        price = spec.reference * (1 + Decimal(ticks) / 200)
        body = {
            "market": spec.symbol,
            "side": side,
            "type": "limit",
            "price": amount(price.quantize(Decimal("0.01"))),
            "quantity": amount(spec.lot * lots),
            "time_in_force": tif,
            "stp": stp,
            "client_order_id": client_order_id,
        }
        return self._place(trader, body)

    @rule(
        target=orders,
        trader=st.integers(0, 2),
        spec=st.sampled_from(MARKETS),
        side=st.sampled_from(["buy", "sell"]),
        lots=st.sampled_from([1, 2, 5, 20]),
        tif=st.sampled_from([None, "IOC", "FOK"]),
    )
    def place_market(self, trader: int, spec: MarketSpec, side: str, lots: int, tif: str | None) -> Any:
        body = {"market": spec.symbol, "side": side, "type": "market", "quantity": amount(spec.lot * lots)}
        return self._place(trader, {**body, "time_in_force": tif})

    @rule(
        trader=st.integers(0, 2),
        spec=st.sampled_from(MARKETS),
        side=st.sampled_from(["buy", "sell"]),
        flaw=st.sampled_from(["price", "quantity", "quantity", "market_gtc", "market_price", "no_price", "market"]),
        bad=st.sampled_from(BAD_AMOUNTS),
    )
    def place_invalid(self, trader: int, spec: MarketSpec, side: str, flaw: str, bad: Any) -> None:
        body: dict[str, Any] = {"market": spec.symbol, "side": side, "type": "limit", "quantity": amount(spec.lot)}
        body["price"] = amount(spec.reference)
        if flaw in ("price", "quantity"):
            body[flaw] = bad
        elif flaw == "market_gtc":
            body.update(type="market", time_in_force="GTC")
            del body["price"]
        elif flaw == "market_price":
            body.update(type="market")
        elif flaw == "no_price":
            del body["price"]
        else:
            body["market"] = "DOGE-USDT"
        _, payload = self._send(self.traders[trader].api, "/api/orders", body, {400})
        assert payload["error"]["code"] in PLACE_CODES, payload
        STATS.outcomes[f"invalid:{payload['error']['code']}"] += 1

    @rule(trader=st.integers(0, 2), order_id=orders)
    def cancel(self, trader: int, order_id: str) -> None:
        owner = self.owner[order_id]
        before = Order.objects.get(pk=int(order_id))
        if owner != trader:
            _, payload = self._send(self.traders[trader].api, f"/api/orders/{order_id}/cancel", None, {404})
            assert payload["error"]["code"] == "order_not_found"
            after = Order.objects.get(pk=int(order_id))
            assert (after.status, after.locked_amount) == (before.status, before.locked_amount)
            STATS.outcomes["cancel:not_yours"] += 1
            return
        live = before.status in LIVE_STATUSES
        _, payload = self._send(
            self.traders[trader].api, f"/api/orders/{order_id}/cancel", None, {200} if live else {409}
        )
        if live:
            assert payload["status"] == "cancelled" and payload["status_reason"] == "user_cancelled", payload
            assert Decimal(payload["filled_quantity"]) == before.filled_quantity, payload
            STATS.outcomes["cancel:ok"] += 1
        else:
            assert payload["error"]["code"] == "order_not_cancellable", payload
            STATS.outcomes["cancel:terminal"] += 1

    @precondition(lambda self: bool(self.owner))
    @rule(pick=st.integers(0, 10_000))
    def cancel_own_live(self, pick: int) -> None:
        """Resting orders are few among all those placed: cancel one of them on purpose."""
        live = list(
            Order.objects.filter(pk__in=[int(i) for i in self.owner], status__in=LIVE_STATUSES)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if live:
            order_id = str(live[pick % len(live)])
            self.cancel(self.owner[order_id], order_id)

    @rule(
        trader=st.integers(0, 2),
        asset=st.sampled_from(ASSETS),
        units=st.integers(1, 5),
        flaw=st.sampled_from([None, None, None, "amount", "asset", "username"]),
        bad=st.sampled_from(BAD_AMOUNTS),
    )
    def deposit(self, trader: int, asset: str, units: int, flaw: str | None, bad: Any) -> None:
        value = {"USDT": Decimal(1000), "ETH": Decimal("0.5"), "BTC": Decimal("0.01")}[asset] * units
        body: dict[str, Any] = {"username": self.traders[trader].user.username, "asset": asset, "amount": amount(value)}
        if flaw is None:
            self._send(self.staff, "/api/admin/wallets/credit", body, {200})
            self.credited[asset] += value
            STATS.outcomes["deposit"] += 1
            return
        body[flaw] = {"amount": bad, "asset": "DOGE", "username": "nobody-here"}[flaw]
        before = list(Wallet.objects.order_by("pk").values_list("pk", "balance", "locked"))
        _, payload = self._send(self.staff, "/api/admin/wallets/credit", body, {400})
        assert list(Wallet.objects.order_by("pk").values_list("pk", "balance", "locked")) == before, payload
        STATS.outcomes[f"deposit_refused:{payload['error']['code']}"] += 1

    @precondition(lambda self: bool(self.owner))
    @rule(trader=st.integers(0, 2))
    def read_wallets(self, trader: int) -> None:
        response = self.traders[trader].api.get("/api/wallets")
        STATS.requests += 1
        STATS.statuses[str(response.status_code)] += 1
        assert response.status_code == 200, response.content
        for row in response.json():
            assert Decimal(row["balance"]) == Decimal(row["available"]) + Decimal(row["locked"]), row
            assert Decimal(row["available"]) >= 0 and Decimal(row["locked"]) >= 0, row

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def money_is_conserved_and_locked_as_the_orders_say(self) -> None:
        STATS.steps += 1
        for asset in ASSETS:
            total = Wallet.objects.filter(asset__symbol=asset).aggregate(s=Sum("balance"))["s"] or Decimal(0)
            assert total == self.credited[asset], f"{asset}: balances {total} != deposited {self.credited[asset]}"
        for trader in self.traders:
            actual = dict.fromkeys(ASSETS, Decimal(0))
            for symbol, balance, locked in Wallet.objects.filter(user_id=trader.user.pk, bucket=0).values_list(
                "asset__symbol", "balance", "locked"
            ):
                assert Decimal(0) <= locked <= balance, (trader.user.username, symbol, balance, locked)
                actual[symbol] = locked
            assert actual == expected_locks(trader.user.pk), (
                f"{trader.user.username}: locked {actual} != what the live orders may spend"
            )
        assert_invariants()


@pytest.mark.timeout(240)
def test_order_api_state_machine(db: Any) -> None:
    run_state_machine_as_test(
        OrderApiMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {
                "examples": STATS.examples,
                "steps_checked": STATS.steps,
                "requests": STATS.requests,
                "statuses": dict(sorted(STATS.statuses.items())),
                "outcomes": dict(sorted(STATS.outcomes.items())),
            },
            indent=2,
        )
    )
    outcomes = STATS.outcomes
    # The run must have exercised what it claims to check, not only refusals.
    assert STATS.examples >= 25 and STATS.requests >= 300, STATS
    assert any(key.endswith(":filled") for key in outcomes), outcomes
    assert any(key.endswith((":open", ":partially_filled")) for key in outcomes), outcomes
    assert outcomes["cancel:ok"] and outcomes["cancel:not_yours"], outcomes
    assert outcomes["refused:insufficient_funds"] and outcomes["deposit"], outcomes
