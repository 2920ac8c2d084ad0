"""The production topology as deployed: `scripts/serve` on the local PostgreSQL, a private
Redis and anvil (the README's "Real services" recipe). It checks, migrates, collects,
checks the contract and runs the Procfile under honcho; the test trades through the API,
waits until the holder share is paid on-chain (read from the contract's logs), scrapes
/metrics, follows the request's correlation id through the JSON logs of the web, the
engine, the Celery worker and the chain worker to the delivering transaction, then sends
SIGTERM and expects every process to stop cleanly."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import requests
from web3 import Web3

from bench.infra import free_port
from revenue.chain.client import delivered_logs
from revenue.delivery.metadata import Key
from tests.deploy.processes import Served, json_lines, pid_alive
from tests.reliability.harness import INVARIANTS, Platform, Rig, invariant_violations, log
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.reliability, pytest.mark.anvil]

PROCESSES = {"web.1", "engine.1", "worker.1", "chain.1", "beat.1"}
QUANTITY = "0.1000"  # 200 USDT at 2,000: a holder share above the dust threshold


def metric_value(text: str, sample: str) -> float:
    """The value of the one sample `sample` (name and labels as exposed), else -1."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def event_of(platform: Platform, correlation_id: str) -> dict[str, Any] | None:
    keys = [Key.STATUS, Key.TX_HASH, Key.AMOUNT_WEI, Key.BATCH_ID, Key.CORRELATION_ID]
    rows = platform.query(
        "SELECT id, metadata->>%s, metadata->>%s, metadata->>%s, metadata->>%s FROM revenue_revenueevent "
        "WHERE metadata->>%s = %s",
        [*(key.value for key in keys), correlation_id],
    )
    if not rows:
        return None
    (event_id, status, tx_hash, amount_wei, batch_id), *_ = rows
    return {"id": event_id, "status": status, "tx_hash": tx_hash, "amount_wei": amount_wei, "batch_id": batch_id}


def redrive_every_seconds(platform: Platform, seconds: int) -> None:
    """The delivery re-drive's periodic task every `seconds` (beat reads it when it starts)."""
    ((interval,),) = platform.query(
        "INSERT INTO django_celery_beat_intervalschedule (every, period) VALUES (%s, 'seconds') RETURNING id",
        [seconds],
    )
    updated = platform.query(
        "UPDATE django_celery_beat_periodictask SET interval_id = %s, expire_seconds = %s "
        "WHERE task = 'revenue.tasks.revenue_delivery_redrive' RETURNING id",
        [interval, seconds],
    )
    assert len(updated) == 1, updated


@pytest.mark.timeout(420)
def test_scripts_serve_trades_delivers_on_chain_and_stops_cleanly(rig: Rig) -> None:
    broker = rig.redis()
    node = rig.anvil(extra_args=["--block-time", "1"])  # confirmations accrue as on a live chain
    port = free_port()
    token = secrets.token_urlsafe(32)
    platform = rig.platform(
        redis_url=broker.url,
        seed={"traders": 2},
        WEB3_PROVIDER_URI=node.uri,
        CHAIN_SIGNER_KEY_FILE=str(rig.workdir / "chain-signer.key"),
        DELIVERY_ENABLED="1",
        CHAIN_CONFIRMATIONS="2",
        DELIVERY_DEBOUNCE_SECONDS="1",
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        METRICS_TOKEN=token,
        PORT=str(port),
        WEB_WORKERS="2",
        WORKER_CONCURRENCY="2",
    )
    # The beat re-drive confirms the batch. Its interval is the database's (the migration
    # wrote DELIVERY_POLL_INTERVAL_SECONDS, 60 s, into the template this database copies): set
    # as an operator does (docs/operations.md), or the delivery waits up to a minute.
    redrive_every_seconds(platform, 2)
    platform.run("manage.py", "chain_deploy", "--dev", timeout=120)
    ((contract, deployed_block),) = platform.query(
        "SELECT contract_address, deployed_block FROM revenue_chaindeployment WHERE active"
    )

    served = Served(env=platform.process_env(), log_path=rig.workdir / "serve.log")
    rig.stack.callback(served.cleanup)
    served.start()
    base = f"http://127.0.0.1:{port}"

    def healthy() -> dict[str, Any] | None:
        served.assert_running()
        body: dict[str, Any] = requests.get(f"{base}/healthz", timeout=5).json()
        return body if body["status"] == "ok" and body["engines"]["main"]["status"] == "ok" else None

    health = wait_until(healthy, what="the topology to be healthy", timeout=120, interval=0.5, ignoring=(OSError,))
    assert health["chain"] == "ok" and health["broker"] == "ok" and health["database"] == "ok"
    assert set(served.started()) == PROCESSES

    # --- a trade through the API ------------------------------------------------------
    seller, buyer = (trader["token"] for trader in platform.seed["traders"][:2])
    correlation_id = f"deploy-{uuid.uuid4().hex[:16]}"

    def place(jwt: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        answer = requests.post(
            f"{base}/api/orders",
            json=body,
            headers={"Authorization": f"Bearer {jwt}", "X-Request-ID": request_id},
            timeout=15,
        )
        assert answer.status_code == 201, answer.text
        assert answer.headers["X-Request-ID"] == request_id
        result: dict[str, Any] = answer.json()
        return result

    place(
        seller,
        {"market": "ETH-USDT", "side": "sell", "type": "limit", "quantity": QUANTITY, "price": "2000.00"},
        f"{correlation_id}-maker",
    )
    bought = place(buyer, {"market": "ETH-USDT", "side": "buy", "type": "market", "quantity": QUANTITY}, correlation_id)
    assert bought["status"] == "filled" and bought["fills"][0]["counterparty"] == "book", bought

    # --- delivered on-chain: the contract's own logs say so ---------------------------------
    event = wait_until(
        lambda: (found := event_of(platform, correlation_id)) and found["status"] == "delivered" and found,
        what="the trade's revenue event to be delivered on-chain",
        timeout=180,
        interval=0.5,
    )
    w3 = Web3(Web3.HTTPProvider(node.uri, request_kwargs={"timeout": 10}))
    receipt = w3.eth.get_transaction_receipt(event["tx_hash"])
    assert receipt["status"] == 1
    paid = [entry for entry in delivered_logs(w3, contract, deployed_block, "latest") if entry.item_id == event["id"]]
    assert len(paid) == 1, paid  # paid exactly once
    assert paid[0].tx_hash == event["tx_hash"]
    assert paid[0].amount == int(event["amount_wei"]) > 0
    ((holder_share,),) = platform.query("SELECT holder_share FROM revenue_revenueevent WHERE id = %s", [event["id"]])
    assert Decimal(holder_share) > 0

    # --- /metrics: summed over the processes of the host ------------------------------------
    assert requests.get(f"{base}/metrics", timeout=10).status_code == 401  # a token is required
    scraped = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert scraped.status_code == 200
    text = scraped.text
    assert metric_value(text, 'platform_trades_total{counterparty="book",market="ETH-USDT"}') == 1
    assert metric_value(text, 'platform_delivery_events{status="delivered"}') >= 1
    assert metric_value(text, 'platform_revenue_deliveries_total{status="delivered"}') >= 1  # the chain worker's
    assert metric_value(text, "platform_engine_batch_seconds_count") >= 2  # the engine's
    # An order's two ends: the web worker's round trip to the engine, and the part of it in the engine.
    assert metric_value(text, "platform_engine_request_seconds_count") >= 2
    assert metric_value(text, "platform_engine_command_seconds_count") >= 2
    assert (
        metric_value(text, "platform_engine_request_seconds_sum")
        >= metric_value(text, "platform_engine_command_seconds_sum")
        > 0
    )
    assert metric_value(text, "platform_delivery_last_confirmed_block") >= receipt["blockNumber"]
    assert metric_value(text, "platform_chain_signer_balance_wei") > 0
    assert metric_value(text, "platform_delivery_oldest_submitted_age_seconds") == 0

    # --- one correlation id from the request to the transaction -----------------------------
    lines = json_lines(served.log_path)
    traced = [line for line in lines if line.get("correlation_id") == correlation_id]
    by_logger = {line["logger"] for line in traced}
    pids = served.started()
    web_line = next(line for line in traced if line["logger"] == "core.requests")
    assert web_line["path"] == "/api/orders" and web_line["status"] == 201
    engine_lines = [line for line in traced if line["logger"] == "orders.sequencer.lifecycle"]
    assert {line["pid"] for line in engine_lines} == {pids["engine.1"]}
    worker_lines = [line for line in traced if line["logger"] == "revenue"]
    assert {line["pid"] for line in worker_lines} == {pids["worker.1"]}
    assert any(line["message"] == "revenue event recorded" for line in worker_lines)
    delivered = [
        line for line in traced if line["logger"] == "revenue.delivery" and line.get("event_id") == event["id"]
    ]
    assert delivered and delivered[0]["tx_hash"] == event["tx_hash"] and delivered[0]["pid"] == pids["chain.1"]
    assert {"core.requests", "orders.sequencer.lifecycle", "revenue", "revenue.delivery"} <= by_logger
    # every process logs JSON lines
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "orders.sequencer.server", "celery.apps.worker", "celery.beat"} <= loggers, loggers

    # --- SIGTERM while a client keeps placing orders: nothing acknowledged is lost -------------
    answered: list[tuple[str, int, str | None]] = []  # client_order_id, status (0: no answer), order id
    stop = threading.Event()

    def keep_placing() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            client_order_id = f"shutdown-{n}"
            body = {
                "market": "ETH-USDT",
                "side": "buy",
                "type": "limit",
                "quantity": "0.0100",
                "price": "1000.00",  # below the book: it rests
                "client_order_id": client_order_id,
            }
            try:
                answer = requests.post(
                    f"{base}/api/orders", json=body, headers={"Authorization": f"Bearer {buyer}"}, timeout=5
                )
            except requests.RequestException:
                answered.append((client_order_id, 0, None))
                time.sleep(0.05)
                continue
            order_id = answer.json().get("id") if answer.status_code == 201 else None
            answered.append((client_order_id, answer.status_code, order_id))

    placer = threading.Thread(target=keep_placing, name="placer", daemon=True)
    placer.start()
    wait_until(lambda: sum(status == 201 for _, status, _ in answered) >= 5, what="orders placed", timeout=30)
    code = served.terminate(timeout=120)
    stop.set()
    placer.join(15)
    acknowledged = {cid: order_id for cid, status, order_id in answered if status == 201}
    stored = dict(
        platform.query(
            "SELECT client_order_id, id::text FROM orders_order WHERE client_order_id LIKE 'shutdown-%%' "
            "AND status = 'open'"
        )
    )
    assert acknowledged and all(stored.get(cid) == order_id for cid, order_id in acknowledged.items()), (
        acknowledged,
        stored,
    )
    assert {status for _, status, _ in answered} <= {201, 503, 0}, answered  # never a 5xx other than 503
    assert invariant_violations(platform) == {name: [] for name in INVARIANTS}
    log(f"during shutdown: {len(acknowledged)} orders acknowledged and stored, {len(answered)} attempts")

    # --- SIGTERM: every process stops cleanly ------------------------------------------------
    stopped = served.stopped()
    log(f"scripts/serve exited {code}; processes stopped: {stopped}")
    assert stopped == dict.fromkeys(PROCESSES, 0), served.text()[-4000:]
    assert code == 0
    assert "topology stopped cleanly" in served.text()
    assert "Warm shutdown" in served.text()  # the Celery workers finished their tasks
    for pid in pids.values():
        wait_until(lambda pid=pid: not pid_alive(pid), what=f"process {pid} to be gone", timeout=10)
