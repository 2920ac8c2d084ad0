"""The amounts of a fill's notification (static/js/streams.js `notify`) are written as the
pages write them: the decimal text without its trailing zeros, never through a float. Run
in Node on the function as the page has it. Number() wrote a fee of 0.00000084 as 8.4e-7,
rounded 2400011999999999999.99975999 to 2400012000000000000 and wrote 1e21 as 1e+21."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.environment import require

STREAMS_JS = Path(__file__).resolve().parents[3] / "static" / "js" / "streams.js"
FUNCTION = re.compile(r"^  function plainAmount\(text\) \{\n.*?^  \}\n", re.MULTILINE | re.DOTALL)

# Amounts as the API writes them: 8 decimals, up to 44 integer digits (an order's fee paid).
amounts = st.integers(min_value=0, max_value=10**52 - 1).map(lambda units: f"{Decimal(units).scaleb(-8):f}")


def _written(texts: list[str]) -> list[str]:
    node = shutil.which("node")
    require(node is not None, "node is missing: make install")
    source = FUNCTION.search(STREAMS_JS.read_text())
    assert source is not None, "plainAmount is not in static/js/streams.js"
    script = f"{source.group(0)}\nconsole.log(JSON.stringify({json.dumps(texts)}.map(plainAmount)));"
    done = subprocess.run([str(node), "-e", script], capture_output=True, text=True, timeout=30, check=True)
    return list(json.loads(done.stdout))


def _as_pages_write(text: str) -> str:
    return format(Decimal(text).normalize(), "f")  # orders.views: the no-JS message


def test_small_and_large_amounts_are_written_in_plain_digits():
    texts = ["0.00000084", "0.00010000", "2400011999999999999.99975999", "1000000000000000000000.00000000",
             "0.00000000", "100.00000000", "2000.50000000"]  # fmt: skip
    assert _written(texts) == ["0.00000084", "0.0001", "2400011999999999999.99975999", "1000000000000000000000",
                               "0", "100", "2000.5"]  # fmt: skip


@settings(max_examples=5, deadline=None)
@given(texts=st.lists(amounts, min_size=1, max_size=200))
def test_every_amount_reads_as_the_pages_write_it(texts):
    assert _written(texts) == [_as_pages_write(text) for text in texts]
