"""Where the web workers' time goes, from py-spy's collapsed stacks.

`BENCH_PYSPY=gil make bench` samples only the thread holding the GIL (Python CPU time),
`BENCH_PYSPY=1` every non-idle thread (wall time, waits included); then
`python -m bench.profile_summary var/bench/full/pyspy-*.txt` prints the inclusive share
of the frames that matter for order placement (nested by indentation), and the top
frames by self time."""

from __future__ import annotations

import re
import sys
from collections import Counter

# (indent, label, frame pattern): a sample counts for a row when any of its frames matches.
ROWS: list[tuple[int, str, str]] = [
    (0, "HTTP request, ASGI (uvicorn run_asgi)", r"^RequestResponseCycle\.run_asgi "),
    (1, "fast path (core/api/fast.py)", r"^FastPath\.__call__ "),
    (2, "route: the path resolved (_route)", r"^FastPath\._route "),
    (2, "request object, host, credentials, body (_prepare)", r"^FastPath\._prepare "),
    (2, "middlewares' work and the handler (_respond)", r"^FastPath\._respond "),
    (3, "POST /api/orders on the event loop (order_place_hot_async)", r"^order_place_hot_async "),
    (4, "ZeroMQ round trip, awaited (ShardClient.request)", r"^ShardClient\.request "),
    (3, "access line (access_log)", r"^access_log "),
    (2, "answer sent (send_response)", r"^ASGIHandler\.send_response "),
    (1, "Django's full path (ASGIHandler.handle)", r"^ASGIHandler\.handle "),
    (0, "HTTP request, WSGI (gunicorn handle_request)", r"^ThreadWorker\.handle_request "),
    (1, "middleware, outside the view", r"^BaseHandler\.get_response "),
    (1, "POST /api/orders, hot path (orders/api/hot.py)", r"^order_place_hot "),
    (0, "token check (request_principal)", r"^request_principal "),
    (0, "order rate (worker_rate_count)", r"^worker_rate_(count|wait) "),
    (0, "body (order_request_parse)", r"^order_request_parse "),
    (0, "order_place_as: command to the engine and its answer", r"^order_place_as "),
    (1, "ZeroMQ round trip (orders/sequencer/zmq.py _request)", r"^_request \(orders/sequencer/zmq\.py"),
    (0, "answer written out (json_response)", r"^json_response "),
    (0, "DRF views (sessions, GETs, cancels)", r"^APIView\.dispatch "),
    (1, "DRF: authentication (JWT user query) + throttle", r"^APIView\.initial "),
    (2, "the user's row (get_user)", r"^(Platform)?JWTAuthentication\.get_user "),
    (1, "POST /api/orders through DRF", r"^OrdersApi\.post "),
    (1, "POST /api/orders/{id}/cancel", r"^OrderCancelApi\.post "),
    (2, "the order's market (_market_of_order)", r"^_market_of_order "),
    (2, "order_get_for_user (re-read for the answer)", r"^order_get_for_user "),
    (1, "POST /api/orders/cancel-all", r"^OrdersCancelAllApi\.post "),
    (0, "across the request: SQL compilation (as_sql)", r"^SQLCompiler\.as_sql "),
    (0, "across the request: psycopg execute", r"^Cursor\.execute \(psycopg"),
    (0, "across the request: waiting on PostgreSQL (psycopg wait)", r"^Connection\.wait "),
    (0, "module imports (first requests)", r"^_find_and_load "),
]
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
PREFIXES = (".venv/lib/python3.11/site-packages/",)


def _frame(raw: str) -> str:
    match = FRAME.match(raw)
    if not match:
        return raw
    path = match.group("file")
    for prefix in PREFIXES:
        path = path.replace(prefix, "")
    path = re.sub(r"^.*?/(?=(orders|revenue|core|accounts|config|bench)/)", "", path)
    path = re.sub(r"^.*?site-packages/", "", path)
    line = match.group("line")
    return f"{match.group('func')} ({path}{':' + line if line else ''})"


def summarize(paths: list[str]) -> str:
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        with open(path) as handle:
            for line in handle:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if stack and count.isdigit():
                    stacks[tuple(_frame(f) for f in stack.split(";"))] += int(count)
    total = sum(stacks.values())
    if not total:
        return "no samples"
    patterns = [(indent, label, re.compile(pattern)) for indent, label, pattern in ROWS]
    lines = [f"{total:,} samples", f"{'share':>7}  frame"]
    for indent, label, pattern in patterns:
        hits = sum(n for frames, n in stacks.items() if _matches(pattern, frames))
        lines.append(f"{100 * hits / total:6.1f}%  {'  ' * indent}{label}")
    own: Counter[str] = Counter()
    for frames, n in stacks.items():
        own[re.sub(r":\d+\)$", ")", frames[-1])] += n
    lines.append("")
    lines.append("top frames by self time")
    lines.extend(f"{100 * n / total:6.1f}%  {name}" for name, n in own.most_common(25))
    return "\n".join(lines)


def _matches(pattern: re.Pattern[str], frames: tuple[str, ...]) -> bool:
    if ";" in pattern.pattern:  # a pattern over the joined stack (nesting of two frames)
        return any(pattern.search(";".join(frames[i:])) for i in range(len(frames)))
    return any(pattern.search(frame) for frame in frames)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    print(summarize(argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
