"""bench.ab: the two sides' figures side by side, and who won each pair."""

from __future__ import annotations

import pytest

from bench.ab import env_assignments, pairs_summary


def _row(summary: str, key: str) -> list[str]:
    [line] = [line for line in summary.splitlines() if line.split()[0] == key]
    return line.split()


def test_each_key_counts_the_pairs_b_won_in_its_own_direction():
    a = [{"orders_per_s": 600.0, "p99_ms": 20.0}, {"orders_per_s": 650.0, "p99_ms": 18.0}]
    b = [{"orders_per_s": 630.0, "p99_ms": 21.0}, {"orders_per_s": 640.0, "p99_ms": 17.0}]
    summary = pairs_summary(a, b, keys=["orders_per_s", "p99_ms"])
    assert _row(summary, "orders_per_s") == ["orders_per_s", "600/650", "630/640", "1/2", "1.017"]
    # Lower is better for a time: B won the second pair only.
    assert _row(summary, "p99_ms") == ["p99_ms", "20/18", "21/17", "1/2", "0.997"]


def test_the_machines_own_figures_are_shown_but_not_scored_and_missing_keys_are_left_out():
    a = [{"pgbench_tps": 5000.0}]
    b = [{"pgbench_tps": 5500.0}]
    summary = pairs_summary(a, b, keys=["pgbench_tps", "engine_orders_per_s"])
    assert _row(summary, "pgbench_tps")[-2:] == ["-", "1.100"]
    assert "engine_orders_per_s" not in summary


def test_sides_need_as_many_runs():
    with pytest.raises(ValueError):
        pairs_summary([{}], [], keys=["orders_per_s"])


def test_env_assignments():
    assert env_assignments(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ValueError):
        env_assignments(["nothing"])
