"""bench.profile_summary reads py-spy's collapsed stacks and names the frames of the order
path as it is now (the hot path, the DRF views)."""

from __future__ import annotations

from pathlib import Path

from bench.profile_summary import summarize

SITE = "/work/x/.venv/lib/python3.11/site-packages"
HOT = ";".join(
    [
        f"ThreadWorker.handle_request ({SITE}/gunicorn/workers/gthread.py:1)",
        f"BaseHandler.get_response ({SITE}/django/core/handlers/base.py:2)",
        "order_place_hot (/work/x/orders/api/hot.py:3)",
    ]
)
STACKS = [
    (HOT + ";request_principal (/work/x/accounts/authentication.py:4)", 10),
    (HOT + ";worker_rate_count (/work/x/core/api/throttling.py:5)", 5),
    (HOT + ";order_place_as (/work/x/orders/services/orders.py:6);_request (/work/x/orders/sequencer/zmq.py:7)", 30),
    (HOT + ";json_response (/work/x/orders/api/hot.py:8)", 5),
    (
        f"ThreadWorker.handle_request ({SITE}/gunicorn/workers/gthread.py:1);"
        f"APIView.dispatch ({SITE}/rest_framework/views.py:9);"
        "OrderCancelApi.post (/work/x/orders/api/orders.py:10);"
        "_market_of_order (/work/x/orders/services/orders.py:11)",
        50,
    ),
]


def _share(report: str, label: str) -> str:
    (line,) = [line for line in report.splitlines() if line.strip().endswith(label)]
    return line.split("%")[0].strip()


def test_the_rows_name_the_new_path(tmp_path: Path) -> None:
    collapsed = tmp_path / "pyspy.txt"
    collapsed.write_text("".join(f"{stack} {count}\n" for stack, count in STACKS))
    report = summarize([str(collapsed)])
    assert report.startswith("100 samples")
    assert _share(report, "POST /api/orders, hot path (orders/api/hot.py)") == "50.0"
    assert _share(report, "token check (request_principal)") == "10.0"
    assert _share(report, "order rate (worker_rate_count)") == "5.0"
    assert _share(report, "ZeroMQ round trip (orders/sequencer/zmq.py _request)") == "30.0"
    assert _share(report, "POST /api/orders/{id}/cancel") == "50.0"
    assert _share(report, "the order's market (_market_of_order)") == "50.0"
    assert "_market_of_order (orders/services/orders.py)" in report  # paths shortened to the app


def test_the_rows_name_the_asgi_fast_path(tmp_path: Path) -> None:
    fast = ";".join(
        [
            f"RequestResponseCycle.run_asgi ({SITE}/uvicorn/protocols/http/httptools_impl.py:1)",
            "FastPath.__call__ (/work/x/core/api/fast.py:2)",
        ]
    )
    respond = fast + ";FastPath._respond (/work/x/core/api/fast.py:3)"
    stacks = [
        (fast + ";FastPath._route (/work/x/core/api/fast.py:4)", 10),
        (fast + ";FastPath._prepare (/work/x/core/api/fast.py:5);request_principal (/work/x/accounts/x.py:6)", 20),
        (
            respond + ";order_place_hot_async (/work/x/orders/api/hot.py:7);"
            "ShardClient.request (/work/x/orders/services/engine_async.py:8)",
            40,
        ),
        (respond + ";access_log (/work/x/core/middleware.py:9)", 10),
        (fast + f";ASGIHandler.send_response ({SITE}/django/core/handlers/asgi.py:10)", 20),
    ]
    collapsed = tmp_path / "pyspy.txt"
    collapsed.write_text("".join(f"{stack} {count}\n" for stack, count in stacks))
    report = summarize([str(collapsed)])
    assert _share(report, "fast path (core/api/fast.py)") == "100.0"
    assert _share(report, "token check (request_principal)") == "20.0"
    assert _share(report, "ZeroMQ round trip, awaited (ShardClient.request)") == "40.0"
    assert _share(report, "middlewares' work and the handler (_respond)") == "50.0"
    assert _share(report, "answer sent (send_response)") == "20.0"
