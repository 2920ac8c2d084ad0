"""Public market data: GET /api/markets, /api/markets/{symbol}/book, /trades and /candles."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import Trade
from tests.factories import UserFactory, fund, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import place

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def traders(market):
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "100")
    fund(buyer, "USDT", "1000000")
    return seller, buyer


def trade(traders, price: str, quantity: str) -> Trade:
    seller, buyer = traders
    place(seller, side="sell", type="limit", quantity=quantity, price=price)
    order = place(buyer, side="buy", type="limit", quantity=quantity, price=price, time_in_force="IOC")
    assert order.status == "filled"
    return Trade.objects.get(taker_order=order)


@pytest.mark.parametrize("path", ["book", "trades", "candles"])
def test_unknown_symbol_is_404_market_not_found(api_client, market, path):
    response = api_client.get(f"/api/markets/NOPE-USDT/{path}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "market_not_found"


@pytest.mark.parametrize(
    "query",
    [
        "book?depth=0",
        "book?depth=501",
        "book?depth=abc",
        "book?depth=-1",
        "trades?limit=0",
        "trades?limit=x",
        "candles?interval=2m",
        "candles?interval=1M",
        "candles?limit=0",
        "candles?limit=1001",
    ],
)
def test_bad_query_parameters_are_400(api_client, market, query):
    response = api_client.get(f"/api/markets/ETH-USDT/{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("query", "name", "takes"),
    [
        ("book?limit=5", "limit", "depth"),
        ("trades?size=10", "size", "limit"),
        ("candles?resolution=5m", "resolution", "interval, limit"),
        ("candles?interval=5m&symbol=BTC-USDT", "symbol", "interval, limit"),
    ],
)
def test_a_parameter_of_another_name_is_refused_not_dropped(api_client, market, query, name, takes):
    """`?resolution=5m` (as other exchanges name it) answered 1-minute candles as if asked for
    them, and `?limit=` on the book its default depth: a bot read them as what it asked for."""
    response = api_client.get(f"/api/markets/ETH-USDT/{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and list(error["fields"]) == [name]
    assert error["fields"][name] == [f"Not a parameter of this endpoint, which takes {takes}."]


def test_market_list(api_client, traders):
    market_create("BTC-USDT", reference_price="30000.00")
    trade(traders, "2001.50", "0.1")
    rows = api_client.get("/api/markets").json()
    assert [r["symbol"] for r in rows] == ["BTC-USDT", "ETH-USDT"]
    assert rows[1] == {
        "symbol": "ETH-USDT",
        "base": "ETH",
        "quote": "USDT",
        "price_tick": "0.01000000",
        "quantity_step": "0.00010000",
        "min_quantity": "0.00010000",
        "reference_price": "2000.00000000",
        "last_price": "2001.50000000",
    }
    assert rows[0]["last_price"] is None
    assert_invariants()


# --- the book -----------------------------------------------------------------------------------


@pytest.fixture
def book_orders(market, trader):
    a, b, c = trader(ETH="10", USDT="100000"), trader(ETH="10", USDT="100000"), trader(ETH="10", USDT="100000")
    a.order(side="sell", type="limit", quantity="1", price="2001.00")
    b.order(side="sell", type="limit", quantity="0.5", price="2001.00")
    c.order(side="sell", type="limit", quantity="2", price="2003.00")
    a.order(side="sell", type="limit", quantity="1", price="2002.00")
    a.order(side="buy", type="limit", quantity="1", price="1999.00")
    b.order(side="buy", type="limit", quantity="2", price="1998.00")
    c.order(side="buy", type="limit", quantity="0.3", price="1999.00")
    c.order(side="buy", type="limit", quantity="0.7", price="1990.00")
    # Not on the book: a pending stop, a cancelled order, a filled one.
    c.order(side="sell", type="stop_loss", quantity="1", stop_price="1900.00")
    cancelled = c.order(side="sell", type="limit", quantity="5", price="2001.00").json()
    c.api.post(f"/api/orders/{cancelled['id']}/cancel")
    b.order(side="sell", type="limit", quantity="0.2", price="2004.00")
    # Skips its own 1 @ 2001 and takes 0.2 of b's 0.5 @ 2001 (0.3 left); b's 0.2 @ 2004 stays.
    a.order(side="buy", type="limit", quantity="0.2", price="2004.00")
    # Takes 0.2 of the oldest best bid, a's 1 @ 1999 (0.8 left).
    trader(ETH="1").order(side="sell", type="market", quantity="0.2")
    assert_invariants()
    return a


def test_book_is_aggregated_per_level_best_first(book_orders, api_client):
    body = api_client.get("/api/markets/ETH-USDT/book").json()
    assert body["symbol"] == "ETH-USDT"

    def level(price: str, quantity: str, orders: int) -> dict:
        return {"price": price, "quantity": quantity, "orders": orders}

    assert body["asks"] == [
        level("2001.00000000", "1.30000000", 2),
        level("2002.00000000", "1.00000000", 1),
        level("2003.00000000", "2.00000000", 1),
        level("2004.00000000", "0.20000000", 1),
    ]
    assert body["bids"] == [
        level("1999.00000000", "1.10000000", 2),
        level("1998.00000000", "2.00000000", 1),
        level("1990.00000000", "0.70000000", 1),
    ]
    assert_invariants()


def test_book_depth_limits_the_levels_per_side(book_orders, api_client):
    body = api_client.get("/api/markets/ETH-USDT/book?depth=2").json()
    assert [lvl["price"] for lvl in body["asks"]] == ["2001.00000000", "2002.00000000"]
    assert [lvl["price"] for lvl in body["bids"]] == ["1999.00000000", "1998.00000000"]
    one = api_client.get("/api/markets/ETH-USDT/book?depth=1").json()
    assert (len(one["asks"]), len(one["bids"])) == (1, 1)


# --- trades -------------------------------------------------------------------------------------


def test_book_levels_are_exact_past_fifteen_significant_digits(market, api_client):
    """A level's quantity is the exact sum of its orders' remainders, also on SQLite, whose
    SUM adds the text columns as floats (15 significant digits)."""
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "100000000000000000")
    fund(buyer, "USDT", "100000000000000000000")
    for quantity in ("12345678901234.5678", "0.0001", "98765432109876.5432"):
        place(seller, side="sell", type="limit", quantity=quantity, price="7777777.77")
    place(buyer, side="buy", type="limit", quantity="0.0003", price="7777777.77")  # a partial fill
    place(buyer, side="buy", type="limit", quantity="11111111101111.1113", price="0.01")

    body = api_client.get("/api/markets/ETH-USDT/book").json()

    assert body["asks"] == [{"price": "7777777.77000000", "quantity": "111111111011111.11080000", "orders": 3}]
    assert body["bids"] == [{"price": "0.01000000", "quantity": "11111111101111.11130000", "orders": 1}]
    assert_invariants()


def test_market_trades_newest_first_with_limit(api_client, traders):
    made = [trade(traders, price, qty) for price, qty in (("2000.00", "0.1"), ("2001.00", "0.2"), ("1999.50", "0.3"))]
    rows = api_client.get("/api/markets/ETH-USDT/trades").json()
    assert [r["id"] for r in rows] == [str(t.pk) for t in reversed(made)]
    assert rows[0] == {
        "id": str(made[2].pk),
        "price": "1999.50000000",
        "quantity": "0.30000000",
        "taker_side": "buy",
        "executed_at": made[2].executed_at.isoformat().replace("+00:00", "Z"),
    }
    assert [r["id"] for r in api_client.get("/api/markets/ETH-USDT/trades?limit=2").json()] == [
        str(made[2].pk),
        str(made[1].pk),
    ]
    assert api_client.get("/api/markets/ETH-USDT/trades?limit=2").json() == rows[:2]
    other = market_create("BTC-USDT", reference_price="30000.00")
    assert api_client.get(f"/api/markets/{other.symbol}/trades").json() == []
    assert_invariants()


# --- candles ------------------------------------------------------------------------------------


def _at(trade: Trade, when: datetime) -> None:
    Trade.objects.filter(pk=trade.pk).update(executed_at=when)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_one_minute_candles_ohlcv_oldest_first(api_client, traders):
    now = timezone.now()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=3)
    for (price, qty), offset in zip(
        [("2000.00", "0.1"), ("2010.00", "0.2"), ("1990.00", "0.3"), ("2005.00", "0.4"), ("2001.00", "0.5")],
        [5, 20, 50, 65, 125],
        strict=True,
    ):
        _at(trade(traders, price, qty), start + timedelta(seconds=offset))

    rows = api_client.get("/api/markets/ETH-USDT/candles?interval=1m&limit=10").json()
    assert rows == [
        {
            "time": _iso(start),
            "open": "2000.00000000",
            "high": "2010.00000000",
            "low": "1990.00000000",
            "close": "1990.00000000",
            "volume": "0.60000000",
        },
        {
            "time": _iso(start + timedelta(minutes=1)),
            "open": "2005.00000000",
            "high": "2005.00000000",
            "low": "2005.00000000",
            "close": "2005.00000000",
            "volume": "0.40000000",
        },
        {
            "time": _iso(start + timedelta(minutes=2)),
            "open": "2001.00000000",
            "high": "2001.00000000",
            "low": "2001.00000000",
            "close": "2001.00000000",
            "volume": "0.50000000",
        },
    ]
    assert api_client.get("/api/markets/ETH-USDT/candles?limit=10").json() == rows  # 1m is the default
    # `limit` keeps the most recent intervals only.
    for limit in (1, 2, 3):
        recent = api_client.get(f"/api/markets/ETH-USDT/candles?interval=1m&limit={limit}").json()
        assert len(recent) <= limit
        assert recent == rows[len(rows) - len(recent) :]
    assert_invariants()


def test_the_schema_says_limit_counts_intervals_and_quiet_ones_have_no_candle(api_client, traders):
    """The schema described `limit` as "How many candles": a bot asking for the last 100
    one-minute candles of a market quiet for two hours got `[]`, with candles before that.
    `limit` counts intervals back from the current one, and the schema says so."""
    _at(trade(traders, "2000.00", "0.1"), timezone.now() - timedelta(hours=2))
    assert api_client.get("/api/markets/ETH-USDT/candles?interval=1m&limit=100").json() == []
    assert len(api_client.get("/api/markets/ETH-USDT/candles?interval=1h&limit=100").json()) == 1
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/markets/{symbol}/candles"]["get"]
    (limit,) = [p for p in operation["parameters"] if p["name"] == "limit"]
    assert "intervals" in limit["description"] and "fewer than `limit`" in limit["description"]


@pytest.mark.parametrize(("interval", "seconds"), [("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("1d", 86400)])
def test_candles_for_every_interval(api_client, traders, interval, seconds):
    now = timezone.now()
    offsets = [
        timedelta(days=-3),
        timedelta(hours=-5),
        timedelta(minutes=-47),
        timedelta(minutes=-16),
        timedelta(minutes=-14, seconds=-30),
        timedelta(minutes=-6),
        timedelta(minutes=-1),
        timedelta(0),
    ]
    prices = ["2000.00", "2050.00", "1950.00", "2003.00", "2001.00", "1999.00", "2020.00", "2007.00"]
    made = []
    for index, (offset, price) in enumerate(zip(offsets, prices, strict=True)):
        quantity = f"0.{index + 1}"
        _at(trade(traders, price, quantity), now + offset)
        made.append((int((now + offset).timestamp()), D(price), D(quantity)))

    limit = 200
    first_bucket = int(now.timestamp()) // seconds - limit + 1
    buckets: dict[int, list[tuple[Decimal, Decimal]]] = defaultdict(list)
    for ts, price, quantity in made:  # in trade order
        if ts // seconds >= first_bucket:
            buckets[ts // seconds].append((price, quantity))
    expected = [
        {
            "time": _iso(datetime.fromtimestamp(bucket * seconds, tz=UTC)),
            "open": f"{fills[0][0]:.8f}",
            "high": f"{max(p for p, _ in fills):.8f}",
            "low": f"{min(p for p, _ in fills):.8f}",
            "close": f"{fills[-1][0]:.8f}",
            "volume": f"{sum(q for _, q in fills):.8f}",
        }
        for bucket, fills in sorted(buckets.items())
    ]
    rows = api_client.get(f"/api/markets/ETH-USDT/candles?interval={interval}&limit={limit}").json()
    assert rows == expected
    assert len(rows) >= 2
    assert_invariants()
