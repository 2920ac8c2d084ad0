from __future__ import annotations

import logging

import pytest
from django.core.cache import cache

from revenue.failure_log import delivery_failures_log, failure_should_log


def test_cap_rule_matches_the_seed():
    logged = [n for n in range(1, 1001) if failure_should_log(n)]
    assert logged[:10] == list(range(1, 11))
    assert [n for n in logged if 10 < n <= 100] == list(range(20, 101, 10))
    assert [n for n in logged if n > 100] == list(range(200, 1001, 100))
    assert len(logged) == 10 + 9 + 9


@pytest.fixture(autouse=True)
def _clean_counters():
    cache.clear()
    yield
    cache.clear()


def test_logging_is_capped_per_stream(caplog):
    caplog.set_level(logging.WARNING, logger="revenue.delivery.failures")
    written_stream_0 = delivery_failures_log(failures=[(i, 0) for i in range(250)], error="node down")
    written_stream_4 = delivery_failures_log(failures=[(i, 4) for i in range(5)], error="node down")
    assert written_stream_0 == 10 + 9 + 1  # 1..10, 20..100, 200
    assert written_stream_4 == 5  # another stream has its own counter
    records = [r for r in caplog.records if r.name == "revenue.delivery.failures"]
    assert len(records) == 25
    assert [r.failure_count for r in records if r.stream_id == 0][-3:] == [90, 100, 200]
