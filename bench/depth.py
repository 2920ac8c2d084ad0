"""2. Book depth scaling: p50 of the `order_place` service, in process, near the top of a
book of 100 resting orders and of one of 100,000 (same measurement, same book shape at
the top)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from django.contrib.auth.models import User

from bench.infra import log
from bench.seed import seed_resting_orders, vacuum_analyze
from orders.engine.requests import OrderRequest
from orders.models import Market, Order
from orders.services.orders import order_cancel, order_place


def _placements(market: Market, count: int, offset: int) -> list[OrderRequest]:
    """Four kinds in turn, all at the top of the book: a buy and a sell that each take
    0.001 from the best maker (one fill, the maker stays), a buy and a sell that join the
    best level (an insert into the book index)."""
    tick, ref = market.price_tick, market.reference_price
    best_ask, best_bid = ref + tick, ref - tick
    kinds = [
        ("buy", best_ask, "0.0010"),
        ("sell", best_bid, "0.0010"),
        ("buy", best_bid, "0.0100"),
        ("sell", best_ask, "0.0100"),
    ]
    requests = []
    for i in range(offset, offset + count):
        side, price, quantity = kinds[i % len(kinds)]
        requests.append(
            OrderRequest(
                market=market.symbol, side=side, type="limit", quantity=quantity, price=str(price), time_in_force="GTC"
            )
        )
    return requests


def _place(user: User, request: OrderRequest) -> float:
    """One timed placement; an order that joined the book is cancelled right after
    (untimed), so the book keeps its size during the measurement."""
    began = time.perf_counter()
    placed = order_place(user=user, request=request)
    elapsed = (time.perf_counter() - began) * 1000
    if Order.objects.filter(pk=placed.order_id, status__in=["open", "partially_filled"]).exists():
        order_cancel(user=user, order_id=placed.order_id)
    return elapsed


def _measure(user: User, markets: list[Market], *, warmup: int, count: int) -> list[list[float]]:
    """Placements alternating between the markets one by one (so both see the same
    background load), the first `warmup` of each untimed; latencies per market."""
    plans = [_placements(market, warmup + count, 0) for market in markets]
    latencies: list[list[float]] = [[] for _ in markets]
    for index in range(warmup + count):
        for position, plan in enumerate(plans):
            elapsed = _place(user, plan[index])
            if index >= warmup:
                latencies[position].append(elapsed)
    return latencies


def _resting(market: Market) -> int:
    return Order.objects.filter(market=market, status__in=["open", "partially_filled"]).count()


def _stats(prefix: str, values: list[float]) -> dict[str, float]:
    return {f"{prefix}_p50_ms": statistics.median(values), f"{prefix}_p90_ms": statistics.quantiles(values, n=10)[-1]}


def run_depth(
    *,
    small_market: Market,
    large_market: Market,
    taker: str,
    makers: list[int],
    small: int,
    large: int,
    warmup: int,
    placements: int,
) -> dict[str, Any]:
    """First the small book alone (nothing else rests in the table), then the large book
    seeded beside it and both measured interleaved: depth_latency_ratio compares the two
    books under the same load and in the same table, so it isolates the book's depth."""
    user = User.objects.get(username=taker)
    seed_resting_orders(market=small_market, maker_ids=makers, first=0, count=small)
    vacuum_analyze("orders_order", "orders_orderevent", "orders_wallet")
    log(f"depth: {_resting(small_market):,} resting orders, {placements} placements at the top of the book")
    (alone,) = _measure(user, [small_market], warmup=warmup, count=placements)

    began = time.perf_counter()
    seed_resting_orders(market=large_market, maker_ids=makers, first=0, count=large)
    vacuum_analyze("orders_order", "orders_orderevent", "orders_wallet")
    resting_small, resting_large = _resting(small_market), _resting(large_market)
    log(
        f"depth: seeded {resting_large:,} resting orders in {time.perf_counter() - began:.1f} s; "
        f"{placements} placements on each book, interleaved"
    )
    small_ms, large_ms = _measure(user, [small_market, large_market], warmup=warmup, count=placements)
    result: dict[str, Any] = {
        "depth_resting_small": resting_small,
        "depth_resting_large": resting_large,
        **_stats("depth_small_alone", alone),
        **_stats("depth_small", small_ms),
        **_stats("depth_large", large_ms),
        "depth_placements": placements,
    }
    result["depth_latency_ratio"] = result["depth_large_p50_ms"] / result["depth_small_p50_ms"]
    return result
