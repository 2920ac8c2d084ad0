"""bench.ab: the two sides' figures side by side, and who won each pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ab
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


def test_an_older_tree_gets_an_empty_package_for_each_one_it_lacks(tmp_path: Path, monkeypatch) -> None:
    """The editable install maps the project's packages to this checkout: an import the older
    tree could not satisfy loaded this checkout's module (A, before flywheel.templatetags
    existed, failed at `migrate` on the newer flywheel_text's imports)."""
    root, tree = tmp_path / "root", tmp_path / "tree"
    for package in ("flywheel", "flywheel/templatetags", "orders", "orders/sequencer"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("# this checkout's\n")
    (root / "flywheel" / "templatetags" / "flywheel_text.py").write_text("import missing\n")
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "__init__.py").touch()  # not a package of the project's
    (tree / "flywheel").mkdir(parents=True)
    (tree / "flywheel" / "__init__.py").write_text("# the tree's own\n")
    (tree / "orders").mkdir()
    (tree / "orders" / "__init__.py").touch()
    monkeypatch.setattr(ab, "ROOT", root)

    ab._packages_shadowed(tree)

    assert (tree / "flywheel" / "templatetags" / "__init__.py").read_text() == ""
    assert not (tree / "flywheel" / "templatetags" / "flywheel_text.py").exists()
    assert (tree / "orders" / "sequencer" / "__init__.py").exists()
    assert (tree / "flywheel" / "__init__.py").read_text() == "# the tree's own\n"
    assert not (tree / "node_modules").exists()
