"""Benchmarks of the platform on PostgreSQL: `python -m bench` (`make bench`), `--smoke` for CI.

They print figures and write `bench/results.json`; they are not pass/fail tests.
See docs/performance.md."""
