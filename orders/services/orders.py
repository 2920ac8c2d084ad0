"""Placing and cancelling orders: thin, the sequencer does the work.

A command goes to the engine that owns the order's market (orders.sequencer), which
matches, settles and persists it in its next batch and answers once that batch has
committed. Errors come back as the ApplicationError they were (400, 404, 409; 503 when no
engine answers)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, fields
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from core.cache import form_once
from core.logging import correlation_id_get
from core.metrics import ORDER_PLACE_SECONDS
from orders.engine.requests import OrderRequest
from orders.errors import MarketNotFoundInRequest, OrderFormForAnotherAccount, OrderFormResent
from orders.models import Market
from orders.sequencer.commands import answer_raise, cancel_all_command, cancel_command, place_command
from orders.sequencer.transport import engine_call
from orders.services.engine_async import engine_call_async


@dataclass(frozen=True, slots=True)
class PlaceResult:
    order_id: int
    created: bool
    # The contract's order body as the engine built it right after committing; None for a
    # repeated client_order_id (read the order).
    body: dict[str, Any] | None = None


def order_place(*, user: AbstractBaseUser, request: OrderRequest) -> PlaceResult:
    return order_place_as(user_id=int(user.pk), request=request, user_verified=True)


def order_place_as(
    *, user_id: int, request: OrderRequest, user_verified: bool, credentials_mark: str | None = None
) -> PlaceResult:
    """`user_verified`: False when only the caller's credentials were checked (the hot path,
    no user row read): the engine then checks that the user exists and is active and, with
    `credentials_mark` (a JWT's), that its password is still the one the token was issued
    under."""
    started = time.perf_counter()
    command = _place_command(user_id, request, user_verified=user_verified, credentials_mark=credentials_mark)
    answer = engine_call(command, market=str(request.market))
    return _place_result(answer, request=request, started=started)


async def order_place_as_async(
    *, user_id: int, request: OrderRequest, user_verified: bool, credentials_mark: str | None = None
) -> PlaceResult:
    """order_place_as on an event loop (core.api.fast): the engine's answer awaited."""
    started = time.perf_counter()
    command = _place_command(user_id, request, user_verified=user_verified, credentials_mark=credentials_mark)
    answer = await engine_call_async(command, market=str(request.market))
    return _place_result(answer, request=request, started=started)


def _place_command(
    user_id: int, request: OrderRequest, *, user_verified: bool, credentials_mark: str | None
) -> dict[str, Any]:
    return place_command(
        user_id=user_id,
        fields={name: getattr(request, name) for name in _REQUEST_FIELDS},
        correlation_id=correlation_id_get(),
        check_user=not user_verified,
        credentials_mark=credentials_mark,
    )


# OrderRequest's fields in order: its values as received, sent as JSON (dataclasses.asdict
# deep-copied each of them for nothing).
_REQUEST_FIELDS = tuple(field.name for field in fields(OrderRequest))


@functools.lru_cache(maxsize=16)  # an answered placement's type: one of the engine's few
def _place_seconds(order_type: str) -> Any:
    return ORDER_PLACE_SECONDS.labels(type=order_type)


def _place_result(answer: dict[str, Any], *, request: OrderRequest, started: float) -> PlaceResult:
    answer = answer_raise(answer)
    _place_seconds(str(request.type)).observe(time.perf_counter() - started)
    body = answer.get("order")
    order_id = int(body["id"]) if body is not None else int(answer["order_id"])
    return PlaceResult(order_id=order_id, created=answer["status"] == 201, body=body)


def order_cancel(*, user: AbstractBaseUser, order_id: int) -> int:
    return int(order_cancel_as(user_id=int(user.pk), order_id=order_id, user_verified=True)["id"])


def order_cancel_as(
    *, user_id: int, order_id: int, user_verified: bool, credentials_mark: str | None = None
) -> dict[str, Any]:
    """Cancel the caller's order; its contract body, as the engine read it back after the
    cancel. No read here: the engine finds the order by id (orders.sequencer.loop), and with
    several shards each is asked and the one holding the order answers. `user_verified`: as
    and `credentials_mark`: as for order_place_as."""
    command = cancel_command(
        user_id=user_id, order_id=order_id, check_user=not user_verified, credentials_mark=credentials_mark
    )
    answer: dict[str, Any] = answer_raise(engine_call(command))["order"]
    return answer


async def order_cancel_as_async(
    *, user_id: int, order_id: int, user_verified: bool, credentials_mark: str | None = None
) -> dict[str, Any]:
    """order_cancel_as on an event loop (core.api.fast): the engine's answer awaited."""
    command = cancel_command(
        user_id=user_id, order_id=order_id, check_user=not user_verified, credentials_mark=credentials_mark
    )
    answer: dict[str, Any] = answer_raise(await engine_call_async(command, market=None))["order"]
    return answer


def orders_cancel_all(*, user: AbstractBaseUser, symbol: str | None = None) -> list[int]:
    """Cancel every live order of `user` (pending stops included), in the market `symbol`
    or in every market (each shard's engine); returns their ids, newest first per market.
    An unknown symbol: 400 market_not_found."""
    market_id = None
    if symbol is not None:
        market_id = Market.objects.filter(symbol=symbol).values_list("pk", flat=True).first()
        if market_id is None:
            raise MarketNotFoundInRequest(fields={"market": ["No such market."]})
    answer = answer_raise(engine_call(cancel_all_command(user_id=int(user.pk), market_id=market_id), market=symbol))
    return [int(order_id) for order_id in answer["order_ids"]]


def order_place_from_ticket(
    *, user: AbstractBaseUser, request: OrderRequest, ticket: str, opened_for: int | None = None
) -> PlaceResult:
    """The pages' order ticket, placed once per rendered ticket id (core.cache.form_once: a
    second post of it is OrderFormResent and places nothing; a ticket whose order was
    refused can be sent again once corrected). No id (an older page): placed as sent. A
    ticket rendered for another account (`opened_for`, the user it was rendered for: another
    one logged in since, in another tab) is OrderFormForAnotherAccount and places nothing."""
    if opened_for is not None and opened_for != user.pk:
        raise OrderFormForAnotherAccount()
    if not ticket:
        return order_place(user=user, request=request)
    return form_once(
        f"order-ticket:{user.pk}:{ticket}",
        resent=OrderFormResent(),
        act=lambda: order_place(user=user, request=request),
    )
