"""Write services of the revenue app: the collector and post-trade job processing."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from core.logging import correlation_context, correlation_id_get
from core.money import parse_amount
from orders.engine import quantize_down
from orders.models import TradeOutbox, TradeOutboxStatus
from revenue import streams
from revenue.delivery.metadata import document_initial
from revenue.dispatch import post_trade_jobs_dispatch, revenue_delivery_dispatch
from revenue.errors import InvalidRevenueAmount, StreamNotFound
from revenue.locks import lock_trade_outbox
from revenue.models import RevenueEvent, RevenueStream
from revenue.selectors import post_trade_jobs_untried
from revenue.split import revenue_split

logger = logging.getLogger("revenue")
TRANSIENT_ATTEMPTS = 5


# --- the collector ----------------------------------------------------------------------


def revenue_collect(
    *,
    stream: int,
    amount: object,
    description: str,
    source_type: str,
    source_id: str,
    currency: str = "USDT",
    metadata: dict[str, Any] | None = None,
) -> RevenueEvent:
    """Record one revenue event and its stream totals, exactly once per (source_type,
    source_id): collecting the same source again returns the first event. Transient
    database errors are retried with exponential backoff."""
    value = parse_amount(amount) if not isinstance(amount, float) else None
    if value is None or value <= 0:
        raise InvalidRevenueAmount(fields={"amount": ["Must be a positive Decimal with at most 8 decimal places."]})
    for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
        try:
            with transaction.atomic(durable=True):
                return revenue_event_record(
                    stream_id=stream,
                    gross=value,
                    description=description,
                    source_type=source_type,
                    source_id=source_id,
                    currency=currency,
                    metadata=metadata,
                )
        except OperationalError:
            if attempt == TRANSIENT_ATTEMPTS:
                raise
            logger.warning("revenue collection retried after a database error", extra={"attempt": attempt})
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def revenue_event_record(
    *,
    stream_id: int,
    gross: Decimal,
    description: str,
    source_type: str,
    source_id: str,
    currency: str,
    metadata: dict[str, Any] | None = None,
) -> RevenueEvent:
    """Inside the caller's transaction: the event and its stream's totals together."""
    existing = RevenueEvent.objects.filter(source_type=source_type, source_id=source_id).first()
    if existing is not None:
        return existing
    # Locked: its total is added to here, exactly (SQL arithmetic would be floating point
    # on SQLite's text columns).
    stream = RevenueStream.objects.select_for_update().filter(pk=stream_id).first()
    if stream is None:
        raise StreamNotFound(fields={"stream": [f"No revenue stream {stream_id}."]})
    split = revenue_split(gross=gross)
    now = timezone.now()
    event_metadata = document_initial(
        timestamp=now.isoformat(), stream_name=stream.name, correlation_id=correlation_id_get(), source=metadata
    )
    try:
        with transaction.atomic():
            event = RevenueEvent.objects.create(
                stream=stream,
                source_type=source_type,
                source_id=source_id,
                currency=currency,
                gross_amount=gross,
                net_amount=gross,
                holder_share=split.holder,
                reserve_share=split.reserve,
                description=description[:255],
                metadata=event_metadata,
                created_at=now,
            )
    except IntegrityError:
        # The same source was collected concurrently: keep the first event only. Any other
        # integrity error (a violated check) is a real error and propagates.
        winner = RevenueEvent.objects.filter(source_type=source_type, source_id=source_id).first()
        if winner is None:
            raise
        return winner
    RevenueStream.objects.filter(pk=stream_id).update(collected=stream.collected + gross)
    # The holder share goes on-chain after the commit; a burst of events publishes one run.
    transaction.on_commit(revenue_delivery_dispatch)
    logger.info(
        "revenue event recorded",
        extra={
            "event_id": event.pk,
            "stream": stream.name,
            "source": f"{source_type}:{source_id}",
            "gross": str(gross),
        },
    )
    return event


# --- post-trade jobs: the trades of orders' outbox (orders.models.TradeOutbox) -------------


def post_trade_jobs_announced(*, outbox_ids: list[int], **_: object) -> None:
    """Receiver of orders.signals.trades_committed: publish the task that turns those
    trades into revenue events (the periodic sweep picks them up if this cannot)."""
    post_trade_jobs_dispatch(job_ids=outbox_ids)


def post_trade_job_process(*, job_id: int) -> bool:
    """Turn one job into its revenue events, exactly once. Returns False if it was
    already done (a replayed task or a sweep racing the task)."""
    with transaction.atomic(durable=True):
        job = lock_trade_outbox(outbox_id=job_id)
        if job is None or job.status == TradeOutboxStatus.DONE:
            return False
        with correlation_context(job.correlation_id or None):
            trade = job.trade
            symbol = trade.market.symbol
            currency = trade.market.quote.symbol
            total_fee = trade.taker_fee + trade.maker_fee
            if total_fee > 0:
                revenue_event_record(
                    stream_id=streams.TRADING_FEES,
                    gross=total_fee,
                    description=f"Trading fees of trade {trade.pk} on {symbol}",
                    source_type="trade",
                    source_id=str(trade.pk),
                    currency=currency,
                    metadata={"tradeId": trade.pk, "postTradeJobId": job.pk},
                )
            if trade.is_house:
                spread = quantize_down(abs(trade.price - trade.reference_price) * trade.quantity)
                if spread > 0:
                    revenue_event_record(
                        stream_id=streams.MARKET_MAKING,
                        gross=spread,
                        description=f"House spread on trade {trade.pk} on {symbol}",
                        source_type="house_fill",
                        source_id=str(trade.pk),
                        currency=currency,
                        metadata={"tradeId": trade.pk, "postTradeJobId": job.pk},
                    )
            TradeOutbox.objects.filter(pk=job.pk).update(
                status=TradeOutboxStatus.DONE, processed_at=timezone.now(), attempts=F("attempts") + 1
            )
            logger.info("post-trade job processed", extra={"job_id": job.pk, "trade_id": trade.pk})
    return True


def post_trade_jobs_catch_up(*, batch: int, rounds: int) -> int:
    """Process the jobs no task has tried yet, `batch` at a time, at most `rounds` times
    (what is left is the next publication's or the sweep's)."""
    processed = 0
    for _ in range(rounds):
        job_ids = post_trade_jobs_untried(limit=batch)
        processed += post_trade_jobs_process(job_ids=job_ids)
        if len(job_ids) < batch:
            break
    return processed


def post_trade_jobs_process(*, job_ids: Sequence[int]) -> int:
    """Process jobs one transaction each; a failing job is recorded and left for the sweep."""
    processed = 0
    for job_id in job_ids:
        try:
            processed += post_trade_job_process(job_id=job_id)
        except Exception as exc:  # one bad job must not block the others; the sweep retries it
            logger.exception("post-trade job failed", extra={"job_id": job_id})
            TradeOutbox.objects.filter(pk=job_id, status=TradeOutboxStatus.PENDING).update(
                attempts=F("attempts") + 1, last_error=str(exc)[:2000]
            )
    return processed
