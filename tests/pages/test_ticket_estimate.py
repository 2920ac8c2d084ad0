"""The order ticket's estimate (static/js/app.js `ticketEstimate`), run in Node on the
functions as the page has them: exact to the last unit, the fee rounded down as the
server charges it (orders.engine.calculate_fee), written as the pages' amount filter
writes amounts. In floats the fee was rounded half up past the server's (0.0007 at 1.2345:
0.00000104 where 0.00000103 is charged), a 1e21-scale total was rounded to 16 digits and
every total to cents (0.0005 ETH read 0.00)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from orders.engine import calculate_fee
from orders.templatetags.page_format import amount
from tests.environment import require

APP_JS = Path(__file__).resolve().parents[2] / "static" / "js" / "app.js"
PIECES = re.compile(r"^  var PLACES = 8;\n.*?^  function ticketEstimate\(.*?^  \}\n", re.MULTILINE | re.DOTALL)

# Quantities and prices on a grid whose product has at most 8 places (docs/operations.md).
quantities = st.integers(min_value=1, max_value=10**26).map(lambda units: f"{Decimal(units).scaleb(-4):f}")
prices = st.integers(min_value=1, max_value=10**26).map(lambda units: f"{Decimal(units).scaleb(-4):f}")


def _estimates(cases: list[tuple[str, str, int, str]]) -> list[dict[str, str] | None]:
    node = shutil.which("node")
    require(node is not None, "node is missing: make install")
    source = PIECES.search(APP_JS.read_text())
    assert source is not None, "ticketEstimate is not in static/js/app.js"
    calls = json.dumps(cases)
    script = f"{source.group(0)}\nconsole.log(JSON.stringify({calls}.map(c => ticketEstimate(...c))));"
    done = subprocess.run([str(node), "-e", script], capture_output=True, text=True, timeout=30, check=True)
    return list(json.loads(done.stdout))


def _server(quantity: str, price: str, bps: int, side: str) -> dict[str, str]:
    notional = Decimal(quantity) * Decimal(price)
    fee = calculate_fee(notional=notional, fee_bps=bps)
    return {"total": amount(notional - fee if side == "sell" else notional + fee), "fee": amount(fee)}


def test_small_amounts_read_as_charged():
    cases = [("0.0007", "1.2345", 12, "buy"), ("1", "0.0005", 12, "buy"), ("0.0001", "2000.01", 12, "sell"),
             ("999999999999999999.9999", "2000.01", 12, "buy"), ("1e3", "1", 12, "buy"),
             ("1", "0.000000001", 12, "buy"), ("", "1", 12, "buy"), ("1", "—", 12, "buy")]  # fmt: skip
    assert _estimates(cases) == [
        {"total": "0.00086518", "fee": "0.00000103"},
        {"total": "0.0005006", "fee": "0.0000006"},
        {"total": "0.199761", "fee": "0.00024"},
        {"total": "2,002,410,011,999,999,999,999.79975899", "fee": "2,400,011,999,999,999,999.99975999"},
        None,
        None,
        None,
        None,
    ]


@settings(max_examples=5, deadline=None)
@given(
    cases=st.lists(
        st.tuples(quantities, prices, st.sampled_from([0, 8, 12, 30, 10_000]), st.sampled_from(["buy", "sell"])),
        min_size=1,
        max_size=100,
    )
)
def test_every_estimate_is_what_the_server_charges(cases):
    assert _estimates(cases) == [_server(*case) for case in cases]
