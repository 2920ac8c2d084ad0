"""Real concurrent commits on PostgreSQL: many traders placing crossing orders in two
markets at once, through the API, and engines of two shards that do not wait on each
other."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connections

from orders.models import LIVE_STATUSES, RESTING_STATUSES, Order, OrderStatus, Trade
from orders.sequencer import loop as sequencer_loop
from orders.sequencer.commands import place_command
from orders.sequencer.loop import Sequencer
from tests.factories import fund, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house, trader_create
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 10
ORDERS_PER_THREAD = 14
# What a well-behaved API answers under contention: created, a repeat, and the business
# refusals a racing trader can meet (funds locked meanwhile, an order filled meanwhile).
ALLOWED = {201: None, 200: None, 400: "insufficient_funds", 409: "order_not_cancellable"}


def run_threads(targets: list[Callable[[], None]], *, timeout: float = 120) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait(timeout=30)
                target()
            except BaseException as exc:  # collected and asserted by the caller
                errors.append(exc)
            finally:
                connections.close_all()

        return run

    threads = [threading.Thread(target=wrap(target)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return errors


def random_request(rng: random.Random, symbol: str, reference: Decimal, tick: Decimal) -> dict:
    side = rng.choice(["buy", "sell"])
    kind = rng.choices(["limit", "market", "stop_loss"], weights=[7, 2, 1])[0]
    body: dict = {"market": symbol, "side": side, "type": kind, "stp": rng.choice(["skip", "expire_maker"])}
    if symbol == "ETH-USDT":
        body["quantity"] = str(Decimal(rng.randint(1, 20)) / 10)
    else:
        body["quantity"] = str(Decimal(rng.randint(1, 20)) / 1000)
    # Buyers a little above the reference, sellers a little below: most orders cross.
    offset = Decimal(rng.randint(-3, 6)) * tick * 100
    price = reference + offset if side == "buy" else reference - offset
    if kind == "limit":
        body["price"] = str(price)
        body["time_in_force"] = rng.choice(["GTC", "GTC", "IOC", "FOK"])
    elif kind == "market":
        body["time_in_force"] = rng.choice(["IOC", "FOK"])
    else:
        body["stop_price"] = str(price)
    return body


def test_many_traders_crossing_in_two_markets_at_once():
    eth = market_create("ETH-USDT")
    btc = market_create("BTC-USDT", reference_price="30000.00")
    fund_house(eth, base="2", quote="5000")
    fund_house(btc, base="0.2", quote="5000")
    traders = [trader_create(ETH="10", BTC="0.5", USDT="60000") for _ in range(THREADS)]
    fund(traders[0].user, "TTX", "1000")
    answers: Counter[tuple[int, str | None]] = Counter()
    lock = threading.Lock()

    def trading(index: int) -> Callable[[], None]:
        trader = traders[index]
        rng = random.Random(index)

        def run() -> None:
            mine: list[str] = []
            for step in range(ORDERS_PER_THREAD):
                market = eth if (index + step) % 2 else btc
                if mine and rng.random() < 0.15:
                    response = trader.api.post(f"/api/orders/{mine.pop(rng.randrange(len(mine)))}/cancel")
                else:
                    response = trader.order(
                        **random_request(rng, market.symbol, market.reference_price, Decimal("0.01"))
                    )
                code = response.json()["error"]["code"] if response.status_code >= 400 else None
                with lock:
                    answers[(response.status_code, code)] += 1
                assert ALLOWED.get(response.status_code, "unexpected") in (None, code), response.content
                if response.status_code == 201:
                    mine.append(response.json()["id"])

        return run

    errors = run_threads([trading(index) for index in range(THREADS)])
    assert not errors, errors

    assert sum(answers.values()) == THREADS * ORDERS_PER_THREAD
    assert answers[(201, None)] >= THREADS * ORDERS_PER_THREAD // 2, answers
    assert Trade.objects.filter(market=eth).exists() and Trade.objects.filter(market=btc).exists()
    assert_invariants()
    # Every order is terminal, resting (a GTC limit order) or a stop waiting for its trigger;
    # none was broken by the contention.
    for order in Order.objects.all():
        if order.status in RESTING_STATUSES:
            assert (order.type, order.time_in_force) == ("limit", "GTC"), order
        elif order.status == OrderStatus.PENDING_TRIGGER:
            assert order.type == "stop_loss"
        elif order.status == OrderStatus.ERROR:
            assert order.status_reason == "insufficient_funds", order  # a stop that could not lock more
        else:
            assert order.status not in LIVE_STATUSES
    # Matching was serialized per market: no two traders' resting orders cross each other.
    for market in (eth, btc):
        resting = list(Order.objects.filter(market=market, status__in=RESTING_STATUSES))
        for bid in (o for o in resting if o.side == "buy"):
            crossing = [a.pk for a in resting if a.side == "sell" and a.price <= bid.price and a.user_id != bid.user_id]
            assert not crossing, (bid.pk, crossing)


def test_a_shard_does_not_wait_for_another(monkeypatch):
    """Two engines (sequencers of two shards, each in its own thread and database session):
    hold an ETH-USDT batch open after it wrote everything (its wallets, the house's and the
    fee account's sub-wallets of that market locked). A BTC-USDT batch of the other shard,
    which also trades with the book and the house and pays fees in USDT, commits meanwhile;
    the ETH-USDT engine's next command waits for its first batch (one writer per market)."""
    eth = market_create("ETH-USDT")
    btc = market_create("BTC-USDT", reference_price="30000.00")
    fund_house(eth, base="1", quote="1000")
    fund_house(btc, base="0.1", quote="1000")
    eth_maker = trader_create(ETH="2")
    btc_maker = trader_create(BTC="1")
    eth_taker, eth_second, btc_taker = (trader_create(USDT="50000") for _ in range(3))
    eth_engine, btc_engine = Sequencer(symbols={"ETH-USDT"}), Sequencer(symbols={"BTC-USDT"})

    def command(trader, symbol: str, **fields) -> dict:
        return place_command(user_id=trader.user.pk, fields={"market": symbol, **fields})

    def send(engine: Sequencer, trader, symbol: str, **fields) -> dict:
        try:
            return engine.run_batch([command(trader, symbol, **fields)])[0]
        finally:
            connections.close_all()  # this thread's session

    send(eth_engine, eth_maker, "ETH-USDT", side="sell", type="limit", quantity="0.1", price="2000.00")
    send(eth_engine, eth_maker, "ETH-USDT", side="sell", type="limit", quantity="0.1", price="2001.00")
    send(btc_engine, btc_maker, "BTC-USDT", side="sell", type="limit", quantity="0.01", price="30000.00")

    held, release = threading.Event(), threading.Event()
    write = sequencer_loop.batch_write

    def write_and_hold(*, journal, wallets, now, **rest):
        written = write(journal=journal, wallets=wallets, now=now, **rest)
        if journal.trades and journal.trades[0].taker.market_id == eth.pk and not held.is_set():
            held.set()
            release.wait(timeout=60)  # still inside the batch transaction: every lock is held
        return written

    monkeypatch.setattr(sequencer_loop, "batch_write", write_and_hold)
    finished: dict[str, float] = {}
    eth_lock = threading.Lock()  # one engine process serves its commands one batch at a time

    def market_buy(engine: Sequencer, trader, symbol: str, quantity: str, name: str) -> Callable[[], None]:
        def run() -> None:
            if engine is eth_engine:
                with eth_lock:
                    answer = send(engine, trader, symbol, side="buy", type="market", quantity=quantity)
            else:
                answer = send(engine, trader, symbol, side="buy", type="market", quantity=quantity)
            assert answer["status"] == 201, answer
            assert answer["order"]["status"] == "filled", answer
            finished[name] = time.monotonic()

        return run

    errors: list[BaseException] = []
    holder = threading.Thread(
        target=lambda: errors.extend(run_threads([market_buy(eth_engine, eth_taker, "ETH-USDT", "0.2", "A")]))
    )
    holder.start()
    try:
        assert held.wait(timeout=30), "the ETH-USDT batch never reached its write"
        others = threading.Thread(
            target=lambda: errors.extend(
                run_threads(
                    [
                        # 0.01 from the book, 0.005 from the house
                        market_buy(btc_engine, btc_taker, "BTC-USDT", "0.015", "B"),
                        market_buy(eth_engine, eth_second, "ETH-USDT", "0.1", "C"),
                    ]
                )
            )
        )
        others.start()
        wait_until(lambda: "B" in finished, what="the BTC-USDT batch to commit", timeout=20)
        time.sleep(0.3)  # a fixed look: C must still be waiting (nothing to poll for)
        assert "A" not in finished and "C" not in finished, "the ETH-USDT engine served two batches at once"
    finally:
        release.set()
        holder.join(timeout=60)
    others.join(timeout=60)
    assert not errors, errors
    assert finished["B"] < min(finished["A"], finished["C"])

    buys = {o.user_id: o for o in Order.objects.filter(side="buy")}
    assert [t.is_house for t in Trade.objects.filter(taker_order=buys[btc_taker.user.pk]).order_by("id")] == [
        False,
        True,
    ]
    # A took the two asks at 2000 and 2001; C, which waited for it, found the book empty.
    assert [t.is_house for t in Trade.objects.filter(taker_order=buys[eth_second.user.pk])] == [True]
    assert_invariants()


def test_one_client_order_id_sent_to_two_shards_at_once_places_one_order(monkeypatch):
    """The same client_order_id placed in two markets whose engines are different shards, the
    second while the first's batch has written its order and not committed: one order, a 201
    and a 409 duplicate_client_order_id (the second engine meets the unique index, waits for
    the first's commit, runs its batch again and finds the id taken), never two orders or an
    error answer."""
    eth = market_create("ETH-USDT")
    market_create("BTC-EUR", reference_price="30000.00")
    # Markets without a common asset: no wallet of the one batch is the other's, so only the
    # unique index of client ids stands between them.
    trader = trader_create(USDT="100000", EUR="100000")
    eth_engine, btc_engine = Sequencer(symbols={"ETH-USDT"}), Sequencer(symbols={"BTC-EUR"})
    held, release = threading.Event(), threading.Event()
    write = sequencer_loop.batch_write

    def write_and_hold(*, journal, wallets, now, **rest):
        written = write(journal=journal, wallets=wallets, now=now, **rest)
        if journal.new_orders and journal.new_orders[0].market_id == eth.pk and not held.is_set():
            held.set()
            release.wait(timeout=60)  # inside the batch transaction: the order's row is not committed
        return written

    monkeypatch.setattr(sequencer_loop, "batch_write", write_and_hold)
    met: list[str] = []  # the database errors the engines ran a batch again for
    retryable = sequencer_loop._retryable

    def retryable_seen(exc):
        met.append(str(exc))
        return retryable(exc)

    monkeypatch.setattr(sequencer_loop, "_retryable", retryable_seen)
    answers: dict[str, dict] = {}

    def place(engine: Sequencer, symbol: str, side: str, price: str) -> Callable[[], None]:
        def run() -> None:
            fields = {"market": symbol, "side": side, "type": "limit", "quantity": "0.01", "price": price}
            command = place_command(user_id=trader.user.pk, fields={**fields, "client_order_id": "bot-1"})
            try:
                answers[symbol] = engine.run_batch([command])[0]
            finally:
                connections.close_all()

        return run

    errors: list[BaseException] = []
    first = threading.Thread(
        target=lambda: errors.extend(run_threads([place(eth_engine, "ETH-USDT", "buy", "1000.00")]))
    )
    first.start()
    try:
        assert held.wait(timeout=30), "the ETH-USDT batch never reached its write"
        second = threading.Thread(
            target=lambda: errors.extend(run_threads([place(btc_engine, "BTC-EUR", "buy", "20000.00")]))
        )
        second.start()
        time.sleep(0.5)  # a fixed look: the BTC-EUR batch must be waiting on the uncommitted row
        assert "BTC-EUR" not in answers, answers
    finally:
        release.set()
        first.join(timeout=60)
    second.join(timeout=60)
    assert not errors, errors
    assert answers["ETH-USDT"]["status"] == 201, answers
    assert answers["BTC-EUR"]["status"] == 409, answers
    assert answers["BTC-EUR"]["error"]["code"] == "duplicate_client_order_id"
    assert list(Order.objects.values_list("market__symbol", "client_order_id")) == [("ETH-USDT", "bot-1")]
    assert any("client_order_id" in error for error in met), met  # the race was met, not missed
    assert_invariants()
