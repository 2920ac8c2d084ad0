"""core.money_columns: an SQLite database from before money columns were text is
converted by `migrate` (orders 0003, revenue 0009), exactly as far as the floats allow."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from core.fields import sqlite_money_decode, sqlite_money_encode
from core.money import MAX_AMOUNT, QUANTUM, exact_arithmetic
from core.money_columns import money_columns_upgrade, sqlite_money_legacy_text
from tests.core.legacy_money_database import DEPOSITS, WIDE

FK_INDEXES_COVERED = importlib.import_module("orders.migrations.0004_fk_indexes_covered").COVERED

ROOT = Path(__file__).resolve().parents[2]
MONEY_TABLES = {
    "orders_market": ["price_tick", "quantity_step", "min_quantity", "reference_price", "last_price"],
    "orders_wallet": ["balance", "locked"],
    "orders_deposit": ["amount"],
    "orders_order": ["price", "stop_price", "quantity", "filled_quantity", "quote_filled", "fee_paid", "locked_amount"],
    "orders_trade": ["price", "quantity", "quote_amount", "taker_fee", "maker_fee", "reference_price"],
    "revenue_revenuestream": ["collected", "distributed", "target_monthly"],
    "revenue_revenueevent": ["gross_amount", "net_amount", "holder_share", "reserve_share"],
    "revenue_deliverybatch": ["eth_usd_price"],
}

# The conversion run again on a database already migrated, then the ledger as the
# platform reads it.
UPGRADE_AGAIN = (
    "import django, json; django.setup()\n"
    "from django.apps import apps\n"
    "from django.db import connection\n"
    "from core.money_columns import money_columns_upgrade\n"
    "from orders.selectors.ledger import ledger_check\n"
    "with connection.schema_editor() as editor:\n"
    "    money_columns_upgrade(apps, editor, app_label='orders')\n"
    "    money_columns_upgrade(apps, editor, app_label='revenue')\n"
    "print(json.dumps({row.asset: [str(row.credited), str(row.balances)] for row in ledger_check()}))\n"
)


def _recovered(written: str) -> Decimal:
    """What can be read back from an amount stored as a float."""
    with exact_arithmetic():
        return Decimal(repr(float(written))).quantize(QUANTUM)


def _run(var_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # One hash seed: Django writes the values of an IN (...) in set order.
    env.update(VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="config.settings.test", PYTHONHASHSEED="0")
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _declared(db: sqlite3.Connection, table: str) -> dict[str, str]:
    return {row[1]: row[2].lower() for row in db.execute(f"PRAGMA table_info({table})")}


def _indexes(db: sqlite3.Connection) -> set[tuple[str, str]]:
    rows = db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    return {(name, table) for name, table in rows}


def _money(db: sqlite3.Connection, sql: str) -> list[Decimal]:
    return [sqlite_money_decode(row[0]) for row in db.execute(sql)]


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("legacy_var")
    written = json.loads(_run(var_dir, "-m", "tests.core.legacy_money_database").strip().splitlines()[-1])
    path = var_dir / "db.sqlite3"
    db = sqlite3.connect(path)
    before = {
        "declared": {table: _declared(db, table) for table in MONEY_TABLES},
        "indexes": _indexes(db),
        "storage": {row[0] for row in db.execute("SELECT typeof(balance) FROM orders_wallet")},
    }
    db.close()
    _run(var_dir, "manage.py", "migrate", "--no-input", "-v", "0")
    return var_dir, path, written, before


def test_the_old_database_had_float_columns(legacy):
    _, _, _, before = legacy
    for table, columns in MONEY_TABLES.items():
        assert {before["declared"][table][column] for column in columns} == {"decimal"}, table
    assert before["storage"] <= {"real", "integer"}


def test_every_money_column_is_text_and_every_value_canonical(legacy):
    _, path, _, before = legacy
    db = sqlite3.connect(path)
    for table, columns in MONEY_TABLES.items():
        declared = _declared(db, table)
        assert {declared[column] for column in columns} == {"text"}, table
        other = (set(declared) & set(before["declared"][table])) - set(columns)  # a later migration may add some
        assert {declared[column] for column in other} == {before["declared"][table][column] for column in other}
        for column in columns:
            for (value,) in db.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"):  # noqa: S608
                assert isinstance(value, str)
                assert sqlite_money_encode(sqlite_money_decode(value)) == value
    # None lost by the tables' rebuild but those a later migration drops (later ones may add
    # some: the comparison with a fresh database below covers those).
    dropped = {(name, table) for table, _, name in FK_INDEXES_COVERED}
    assert dropped <= before["indexes"]
    assert before["indexes"] - dropped <= _indexes(db)
    assert not dropped & _indexes(db)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def _schema(path: Path) -> set[tuple[str, str, str, str]]:
    db = sqlite3.connect(path)
    tables = ", ".join(f"'{table}'" for table in MONEY_TABLES)
    rows = db.execute(f"SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name IN ({tables})")  # noqa: S608
    return set(rows)


def test_the_converted_tables_are_those_of_a_fresh_database(legacy, tmp_path):
    _, path, _, _ = legacy
    _run(tmp_path, "manage.py", "migrate", "--no-input", "-v", "0")
    fresh = _schema(tmp_path / "db.sqlite3")
    assert {row[0] for row in fresh} == {"table", "index"}
    assert _schema(path) == fresh  # columns, CHECK and UNIQUE constraints, indexes


def test_values_read_back_as_the_floats_kept_them(legacy):
    _, path, written, _ = legacy
    db = sqlite3.connect(path)
    alice = "(SELECT id FROM auth_user WHERE username = 'alice')"
    amounts = _money(db, f"SELECT amount FROM orders_deposit WHERE user_id = {alice} ORDER BY id")  # noqa: S608
    assert amounts == [Decimal(amount) for amount in DEPOSITS]  # 15 digits or fewer: exact
    assert amounts == [_recovered(amount) for amount in DEPOSITS]
    eth = "(SELECT id FROM orders_asset WHERE symbol = 'ETH')"
    (wide,) = _money(db, f"SELECT amount FROM orders_deposit WHERE asset_id = {eth}")  # noqa: S608
    assert wide == _recovered(WIDE)
    balances = _money(db, "SELECT balance FROM orders_wallet ORDER BY id")
    assert balances[:2] == [Decimal(written["total"]) - Decimal("0.1"), Decimal("0.1")]
    assert _money(db, "SELECT locked FROM orders_wallet ORDER BY id")[0] == Decimal("0.5")
    market = db.execute("SELECT price_tick, reference_price, last_price FROM orders_market").fetchone()
    assert [sqlite_money_decode(value) for value in market] == [Decimal("0.01"), Decimal("2000.5"), Decimal("2000.25")]
    assert _money(db, "SELECT quote_amount FROM orders_trade") == [Decimal("500.0625")]
    assert Decimal("1.25") in _money(db, "SELECT collected FROM revenue_revenuestream")


def test_order_constraints_and_ledger_work_on_the_converted_columns(legacy):
    _, path, _, _ = legacy
    db = sqlite3.connect(path, isolation_level=None)
    # Text order is numeric order (2 < 1999.5 < 2000.25, which float text would not give).
    assert _money(db, "SELECT price FROM orders_order ORDER BY price") == [
        Decimal("2"),
        Decimal("1999.5"),
        Decimal("2000.25"),
    ]
    assert _money(db, "SELECT MAX(price) FROM orders_order") == [Decimal("2000.25")]
    # The CHECK constraints compare the text form.
    alice_usdt = db.execute("SELECT id, balance FROM orders_wallet ORDER BY id").fetchone()
    above = sqlite_money_encode(sqlite_money_decode(alice_usdt[1]) + QUANTUM)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE orders_wallet SET locked = ? WHERE id = ?", [above, alice_usdt[0]])
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE orders_wallet SET balance = ? WHERE id = ?", [sqlite_money_encode(-QUANTUM), alice_usdt[0]])
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE orders_deposit SET amount = ? WHERE id = 1", [sqlite_money_encode(Decimal(0))])
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "UPDATE orders_order SET filled_quantity = ? WHERE status = 'open'", [sqlite_money_encode(Decimal(5))]
        )
    # The ledger: per asset, deposits == balances, exactly.
    for (asset_id,) in db.execute("SELECT id FROM orders_asset").fetchall():
        with exact_arithmetic():
            credited = sum(_money(db, f"SELECT amount FROM orders_deposit WHERE asset_id = {asset_id}"), Decimal(0))  # noqa: S608
            held = sum(_money(db, f"SELECT balance FROM orders_wallet WHERE asset_id = {asset_id}"), Decimal(0))  # noqa: S608
        assert credited == held > 0


def test_the_platform_reads_the_converted_database_and_a_second_run_changes_nothing(legacy):
    var_dir, path, written, _ = legacy
    db = sqlite3.connect(path)
    dump = list(db.iterdump())
    db.close()
    ledger = json.loads(_run(var_dir, "-c", UPGRADE_AGAIN).strip().splitlines()[-1])
    usdt_total = Decimal(written["total"])
    assert {asset: [Decimal(v) for v in values] for asset, values in ledger.items()} == {
        "USDT": [usdt_total, usdt_total],
        "ETH": [_recovered(WIDE), _recovered(WIDE)],
    }
    db = sqlite3.connect(path)
    assert list(db.iterdump()) == dump


def test_legacy_values_convert_as_the_field_encodes():
    assert sqlite_money_legacy_text(None) is None
    assert sqlite_money_legacy_text(0.1) == sqlite_money_encode(Decimal("0.1"))
    assert sqlite_money_legacy_text(100) == sqlite_money_encode(Decimal(100))
    assert sqlite_money_legacy_text(-2.5) == sqlite_money_encode(Decimal("-2.5"))
    assert sqlite_money_legacy_text(1.000000005) == sqlite_money_encode(Decimal("1.00000000"))  # half to even
    assert sqlite_money_legacy_text(1e22) == sqlite_money_encode(MAX_AMOUNT)  # the float nearest MAX_AMOUNT
    assert sqlite_money_legacy_text(-1e22) == sqlite_money_encode(-MAX_AMOUNT)
    assert sqlite_money_legacy_text("100.5") == sqlite_money_encode(Decimal("100.5"))
    canonical = sqlite_money_encode(Decimal("-7.25"))
    assert sqlite_money_legacy_text(canonical) == canonical
    for bad in (float("inf"), "abc", b"1"):
        with pytest.raises(ValueError, match="not an amount"):
            sqlite_money_legacy_text(bad)


@given(
    st.decimals(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT, places=8, allow_nan=False, allow_infinity=False).filter(
        lambda amount: len(amount.normalize().as_tuple().digits) <= 15
    )
)
def test_amounts_of_15_significant_digits_survive_the_float_exactly(amount):
    assert sqlite_money_decode(sqlite_money_legacy_text(float(str(amount)))) == amount


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_nothing_happens_on_postgresql():
    with CaptureQueriesContext(connection) as queries, connection.schema_editor() as editor:
        money_columns_upgrade(django_apps, editor, app_label="orders")
        money_columns_upgrade(django_apps, editor, app_label="revenue")
    statements = [query["sql"] for query in queries.captured_queries]
    assert set(statements) <= {"BEGIN", "COMMIT"}, statements


def test_numbers_left_in_text_columns_are_rewritten(legacy, tmp_path):
    """A table remade between the two versions has text columns holding a float's
    text ("5.5"), which neither sorts nor compares as the column's form."""
    _, path, _, _ = legacy
    copy = tmp_path / "db.sqlite3"
    shutil.copyfile(path, copy)
    db = sqlite3.connect(copy, isolation_level=None)
    db.execute("UPDATE orders_trade SET taker_fee = 5.5, maker_fee = 3")
    assert db.execute("SELECT taker_fee, typeof(maker_fee) FROM orders_trade").fetchall() == [("5.5", "text")]
    db.close()
    _run(tmp_path, "-c", UPGRADE_AGAIN)
    db = sqlite3.connect(copy)
    assert db.execute("SELECT taker_fee, maker_fee FROM orders_trade").fetchall() == [
        (sqlite_money_encode(Decimal("5.5")), sqlite_money_encode(Decimal(3)))
    ]
