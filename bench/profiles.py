"""Sizes and durations of the full benchmark and of the CI smoke version."""

from __future__ import annotations

from dataclasses import dataclass

from config.processes import cores


@dataclass(frozen=True)
class Profile:
    name: str
    # 1. order API throughput
    clients: int
    users: int
    warmup_s: float
    measure_s: float
    web_workers: int
    web_threads: int
    pgbench_scale: int
    pgbench_clients: int
    pgbench_threads: int
    pgbench_seconds: int
    # 2. book depth scaling
    depth_small: int
    depth_large: int
    depth_makers: int
    depth_warmup: int
    depth_placements: int
    # 3. delivery
    delivery_batch: int
    delivery_batched_events: int
    delivery_single_events: int
    delivery_service_events: int
    delivery_service_single_events: int
    # 4. scans
    scan_events: int
    scan_failed: int
    scan_repeats: int
    # 5. the engine alone: throughput, start, failover
    engine_commands: int = 5_000
    engine_batch: int = 100
    engine_resting: int = 100_000
    engine_stops: int = 10_000


FULL = Profile(
    name="full",
    clients=8,
    users=16,
    warmup_s=5.0,
    measure_s=30.0,
    web_workers=cores(),  # the Procfile's default (config.processes); more cost more per answer: docs/performance.md
    web_threads=1,
    pgbench_scale=10,
    pgbench_clients=8,
    pgbench_threads=2,
    pgbench_seconds=15,
    depth_small=100,
    depth_large=100_000,
    depth_makers=100,
    depth_warmup=60,
    depth_placements=400,
    delivery_batch=200,
    delivery_batched_events=10_000,
    delivery_single_events=300,
    delivery_service_events=10_000,
    delivery_service_single_events=200,
    scan_events=1_000_000,
    scan_failed=10_000,
    scan_repeats=7,
)

SMOKE = Profile(
    name="smoke",
    clients=8,
    users=8,
    warmup_s=2.0,
    measure_s=4.0,
    web_workers=cores(),  # the Procfile's default (config.processes); more cost more per answer: docs/performance.md
    web_threads=1,
    pgbench_scale=1,
    pgbench_clients=8,
    pgbench_threads=2,
    pgbench_seconds=3,
    depth_small=100,
    depth_large=2_000,
    depth_makers=20,
    depth_warmup=10,
    depth_placements=40,
    delivery_batch=200,
    delivery_batched_events=600,
    delivery_single_events=16,
    delivery_service_events=600,
    delivery_service_single_events=16,
    scan_events=20_000,
    scan_failed=200,
    scan_repeats=3,
    engine_commands=600,
    engine_resting=5_000,
    engine_stops=500,
)

PROFILES = {"full": FULL, "smoke": SMOKE}
