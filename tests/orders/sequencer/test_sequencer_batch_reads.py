"""What a batch reads before applying its commands (orders.sequencer.reads): read again in
every batch, so what staff or other processes changed in between applies from the next
batch; on PostgreSQL sent together in one pipeline (one round trip)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from accounts.credentials import password_mark
from orders.models import Asset, Market, Order, Trade, Wallet
from orders.sequencer.commands import cancel_command, place_command
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund
from tests.orders.invariants import assert_invariants

pytestmark = pytest.mark.django_db


def _place(user: Any, **fields: str) -> dict[str, Any]:
    return place_command(user_id=user.pk, fields={"market": "ETH-USDT", "type": "limit", **fields}, check_user=True)


def _trade(sequencer: Sequencer, maker: Any, taker: Any) -> Trade:
    answers = sequencer.run_batch(
        [
            _place(maker, side="sell", quantity="1", price="2000.00"),
            _place(taker, side="buy", quantity="1", price="2000.00"),
        ]
    )
    assert [answer["status"] for answer in answers] == [201, 201], answers
    return Trade.objects.get(taker_order_id=int(answers[1]["order"]["id"]))


def test_a_ttx_asset_created_after_the_engine_started_gives_its_discount(market):
    """The asset's absence is not remembered: once created and held, the next batch's
    takers and makers get their discount (silver, 20% off: 2.40 -> 1.92, 1.60 -> 1.28)."""
    maker, taker = UserFactory(), UserFactory()
    fund(maker, "ETH", "2")
    fund(taker, "USDT", "5000")
    sequencer = Sequencer()
    sequencer.load()
    assert not Asset.objects.filter(symbol="TTX").exists()
    first = _trade(sequencer, maker, taker)
    assert (first.taker_fee, first.maker_fee) == (D("2.4"), D("1.6"))
    fund(maker, "TTX", "1000")  # creates the asset
    fund(taker, "TTX", "1000")
    second = _trade(sequencer, maker, taker)
    assert (second.taker_fee, second.maker_fee) == (D("1.92"), D("1.28"))
    assert_invariants()


def test_a_user_deactivated_or_deleted_between_batches_is_refused(market):
    """Users authenticated from their credentials alone are checked in every batch; a
    refused one's command changes nothing (no wallet is created for a user that does not
    exist), and the other commands of its batch go through."""
    alice, bob = UserFactory(), UserFactory()
    fund(alice, "USDT", "5000")
    fund(bob, "USDT", "5000")
    sequencer = Sequencer()
    bid = {"side": "buy", "quantity": "0.1", "price": "1000.00"}
    assert [a["status"] for a in sequencer.run_batch([_place(alice, **bid), _place(bob, **bid)])] == [201, 201]
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    ghost = UserFactory()
    ghost_id = ghost.pk
    ghost.delete()
    answers = sequencer.run_batch(
        [
            _place(alice, **bid),
            place_command(user_id=ghost_id, fields={"market": "ETH-USDT", "type": "limit", **bid}, check_user=True),
            _place(bob, **bid),
            cancel_command(user_id=alice.pk, order_id=Order.objects.filter(user=alice).get().pk, check_user=True),
        ]
    )
    assert [answer["status"] for answer in answers] == [401, 401, 201, 401]
    assert Order.objects.filter(user=alice).count() == 1 and Order.objects.filter(user=bob).count() == 2
    assert not Wallet.objects.filter(user_id=ghost_id).exists()
    get_user_model().objects.filter(pk=alice.pk).update(is_active=True)
    assert sequencer.run_batch([_place(alice, **bid)])[0]["status"] == 201
    assert_invariants()


def test_market_changes_and_credits_apply_from_the_next_batch(market):
    user = UserFactory()
    sequencer = Sequencer()
    bid = {"side": "buy", "quantity": "0.1", "price": "1000.00"}
    assert sequencer.run_batch([_place(user, **bid)])[0]["error"]["code"] == "insufficient_funds"
    fund(user, "USDT", "5000")  # a credit between two batches
    assert sequencer.run_batch([_place(user, **bid)])[0]["status"] == 201
    Market.objects.filter(pk=market.pk).update(is_active=False)
    assert sequencer.run_batch([_place(user, **bid)])[0]["error"]["code"] == "market_inactive"
    Market.objects.filter(pk=market.pk).update(is_active=True, price_tick=D("0.50"))
    answers = sequencer.run_batch([_place(user, **{**bid, "price": "1000.10"}), _place(user, **bid)])
    assert [answer["status"] for answer in answers] == [400, 201]
    assert_invariants()


def _funded_traders(count: int) -> list[Any]:
    users = [UserFactory() for _ in range(count)]
    for user in users:
        fund(user, "USDT", "5000")
        fund(user, "ETH", "1")
    return users


def _recorded(
    sequencer: Sequencer, commands: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[tuple[str, bool]]]:
    """The batch's answers, and every statement it sent with whether it went in a pipeline."""
    statements: list[tuple[str, bool]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql, bool(connection.connection.pgconn.pipeline_status)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        answers = sequencer.run_batch(commands)
    return answers, statements


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's pipeline mode")
def test_a_batchs_reads_and_writes_travel_in_pipelines(market):
    """Every statement of a batch but the test's savepoint goes in a pipeline: the reads
    (the new ids drawn with them) in one; the lock of a maker's wallets (a maker no command
    names) in another, then the writes; with no TTX asset, nothing reads the asset."""
    users = _funded_traders(4)
    sequencer = Sequencer()
    sequencer.load()
    assert sequencer.run_batch([_place(users[3], side="sell", quantity="0.1", price="1999.00")])[0]["status"] == 201
    answers, statements = _recorded(
        sequencer,
        [
            _place(users[0], side="sell", quantity="0.5", price="2000.00"),
            {**_place(users[1], side="buy", quantity="0.2", price="2000.00"), "client_order_id": "reads-1"},
            _place(users[2], side="buy", quantity="0.1", price="1500.00"),
            _place(users[0], side="sell", quantity="0.1", price="2500.00"),
        ],
    )
    assert [answer["status"] for answer in answers] == [201] * 4
    assert [fill["price"] for fill in answers[1]["order"]["fills"]] == ["1999.00000000", "2000.00000000"]
    alone = [sql for sql, piped in statements if not piped and not sql.startswith(("SAVEPOINT", "RELEASE"))]
    assert alone == []
    assert not [sql for sql, _ in statements if sql.startswith('SELECT "id" FROM "orders_asset"')]
    assert_invariants()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ids drawn from PostgreSQL's sequences")
def test_a_batch_draws_its_new_ids_with_its_reads_and_writes_without_reserving_more(market):
    """One order id per placement and two trade ids each, drawn in the reads' round trip:
    a batch with no more trades than that reserves nothing when it writes (the round trip
    that waited for them is gone); its rows carry ids in the order it made them."""
    users = _funded_traders(3)
    sequencer = Sequencer()
    sequencer.load()
    answers, statements = _recorded(
        sequencer,
        [
            _place(users[0], side="sell", quantity="0.5", price="2000.00"),
            _place(users[1], side="buy", quantity="0.2", price="2000.00"),
            _place(users[2], side="buy", quantity="0.3", price="2000.00"),
        ],
    )
    assert [answer["status"] for answer in answers] == [201] * 3
    [draw] = [index for index, (sql, _) in enumerate(statements) if "nextval(" in sql]
    first_insert = next(index for index, (sql, _) in enumerate(statements) if sql.startswith("INSERT"))
    assert draw < first_insert
    order_ids = [int(answer["order"]["id"]) for answer in answers]
    assert order_ids == sorted(order_ids) and len(set(order_ids)) == 3
    trades = list(Trade.objects.filter(taker_order_id__in=order_ids).order_by("id"))
    assert [trade.taker_order_id for trade in trades] == order_ids[1:]  # made in this order
    assert_invariants()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ids drawn from PostgreSQL's sequences")
def test_a_batch_with_more_trades_than_drawn_reserves_the_rest_when_it_writes(market):
    """A market order sweeping five makers: one placement drew two trade ids; the other
    three (and their outbox rows') are reserved with the write, after the drawn ones."""
    makers = [UserFactory() for _ in range(5)]
    for maker in makers:
        fund(maker, "ETH", "1")
    taker = UserFactory()
    fund(taker, "USDT", "50000")
    sequencer = Sequencer()
    sequencer.load()
    rested = sequencer.run_batch(
        [_place(maker, side="sell", quantity="0.1", price=f"{2000 + index}.00") for index, maker in enumerate(makers)]
    )
    assert [answer["status"] for answer in rested] == [201] * 5
    sweep = place_command(
        user_id=taker.pk,
        fields={"market": "ETH-USDT", "type": "market", "side": "buy", "quantity": "0.5", "time_in_force": "IOC"},
        check_user=True,
    )
    [answer], statements = _recorded(sequencer, [sweep])
    assert answer["status"] == 201 and answer["order"]["status"] == "filled", answer
    draws = [index for index, (sql, _) in enumerate(statements) if "nextval(" in sql]
    assert len(draws) == 2  # with the reads, then the rest with the write
    trades = list(Trade.objects.filter(taker_order_id=int(answer["order"]["id"])).order_by("id"))
    assert [str(trade.price) for trade in trades] == [f"{2000 + index}.00000000" for index in range(5)]
    assert len({trade.pk for trade in trades}) == 5
    assert_invariants()


def test_a_token_of_a_password_since_changed_is_refused_from_the_next_batch(market):
    """A command carries the password mark of the token it came with (the hot path); the
    batch compares it with the user's present one: issued before the change, refused (401)
    and nothing done; a token issued since, accepted. Cancels alike."""
    alice = UserFactory()
    fund(alice, "USDT", "5000")
    sequencer = Sequencer()
    bid = {"market": "ETH-USDT", "type": "limit", "side": "buy", "quantity": "0.1", "price": "1000.00"}
    old = password_mark(alice)

    def place(mark: str) -> dict[str, Any]:
        return place_command(user_id=alice.pk, fields=bid, check_user=True, credentials_mark=mark)

    [placed] = sequencer.run_batch([place(old)])
    assert placed["status"] == 201
    alice.set_password("another-password-2026")
    alice.save()
    new = password_mark(alice)
    order_id = int(placed["order"]["id"])
    answers = sequencer.run_batch(
        [
            place(old),
            cancel_command(user_id=alice.pk, order_id=order_id, check_user=True, credentials_mark=old),
            place(new),
        ]
    )
    assert [answer["status"] for answer in answers] == [401, 401, 201], answers
    assert answers[0]["error"]["code"] == "invalid_token"
    assert Order.objects.filter(user=alice).count() == 2
    assert Order.objects.get(pk=order_id).status == "open"
    cancelled = sequencer.run_batch(
        [cancel_command(user_id=alice.pk, order_id=order_id, check_user=True, credentials_mark=new)]
    )
    assert cancelled[0]["status"] == 200
    assert_invariants()
