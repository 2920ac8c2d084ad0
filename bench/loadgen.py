"""HTTP load generator for the order API, run as its own process (no Django).

`python -m bench.loadgen CONFIG.json RESULT.json`: one thread per client, each with one
keep-alive HTTP/1.1 connection (`Connection`) and its own users' JWTs, sending the order mix
(limit GTC / market IOC / FOK / cancel of its own resting orders) for a warm-up and
then a measured window. Records latency per request (send to last byte), answers by
status, and the CPU used by itself, by the watched server processes and by the whole
machine during the window."""

from __future__ import annotations

import json
import os
import random
import resource
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

OPS = ("limit_gtc", "market_ioc", "fok", "cancel")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Market:
    symbol: str
    ref_ticks: int  # reference price in ticks
    tick_units: int  # tick in units of 10**-decimals
    decimals: int
    qty_units: tuple[int, int]  # quantity range in units of 10**-qty_decimals
    qty_decimals: int
    spread_ticks: int  # standard deviation of limit prices around the reference

    def price(self, ticks: int) -> str:
        return _fixed(max(ticks, 1) * self.tick_units, self.decimals)

    def quantity(self, rnd: random.Random) -> str:
        return _fixed(rnd.randint(*self.qty_units), self.qty_decimals)


def _fixed(units: int, decimals: int) -> str:
    text = str(units).rjust(decimals + 1, "0")
    return f"{text[:-decimals]}.{text[-decimals:]}" if decimals else text


class HttpError(Exception):
    """The server's answer could not be read (closed, malformed, or a framing this client does not read)."""


class Connection:
    """One keep-alive HTTP/1.1 connection, as lean as a load generator's client should be.

    http.client cost ~0.3 ms of CPU per request here (its headers parsed by the email
    package, the request in two writes), and the 8 clients share one interpreter: when the
    platform answers them together, each waits its turn for the GIL behind the others'
    parsing, so the client itself lengthened every cycle it measured. This one writes each
    request in one `send` (headers as http.client writes them, byte for byte, then the body)
    and reads only what it needs: the status, Content-Length, Connection: close. TCP_NODELAY
    is set, as urllib3 (requests) and browsers set it."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.pending = b""  # bytes read past the previous answer

    def _socket(self) -> socket.socket:
        if self.sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Blocking, with the kernel's timeouts: a Python socket timeout adds a poll() before
            # every send and recv. A recv past the timeout raises BlockingIOError (an OSError).
            sock.settimeout(None)
            interval = struct.pack("ll", int(self.timeout), 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)
            self.sock = sock
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.pending = None, b""

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send one request and read its answer: (status, body). Raises OSError or HttpError,
        after which the connection is closed."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept-Encoding: identity"]
        lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        lines.extend(("", ""))
        try:
            sock = self._socket()
            sock.sendall("\r\n".join(lines).encode("latin-1") + body)
            return self._answer(sock)
        except (OSError, HttpError):
            self.close()
            raise

    def _answer(self, sock: socket.socket) -> tuple[int, bytes]:
        data = self.pending
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._recv(sock)
        head, data = data[:end].split(b"\r\n"), data[end + 4 :]
        try:
            status = int(head[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise HttpError(f"not an HTTP status line: {head[0]!r}") from None
        length, close = -1, False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                raise HttpError(f"an answer in Transfer-Encoding {value.strip()!r} (only Content-Length is read)")
        if length < 0:
            raise HttpError("an answer without Content-Length")
        while len(data) < length:
            data += self._recv(sock)
        self.pending = data[length:]
        if close:
            self.close()
        return status, data[:length]

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise HttpError("the server closed the connection")
        return chunk


@dataclass
class ClientStats:
    latencies: list[float] = field(default_factory=list)
    by_op: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    sent: int = 0


class Client(threading.Thread):
    def __init__(self, index: int, config: dict[str, Any], markets: list[Market], start: float) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.tokens: list[str] = config["clients"][index]["tokens"]
        self.host = config["host"]
        self.port = int(config["port"])
        self.markets = markets
        self.rnd = random.Random(int(config.get("seed", 1)) * 1000 + index)
        self.weights = [float(config["mix"][op]) for op in OPS]
        self.window = (
            start + float(config["warmup_s"]),
            start + float(config["warmup_s"]) + float(config["measure_s"]),
        )
        self.stop_at = self.window[1]
        self.resting: list[tuple[int, str]] = []  # (token index, order id)
        self.stats = ClientStats()
        self.conn = Connection(self.host, self.port, timeout=30)
        self.turn = 0

    def _request(self, path: str, token: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Connection": "keep-alive"}
        try:
            return self.conn.request("POST", path, payload, headers)
        except (OSError, HttpError):  # a keep-alive connection the server closed: once more, on a new one
            return self.conn.request("POST", path, payload, headers)

    def _next(self) -> tuple[str, str, int, dict[str, Any] | None]:
        op = self.rnd.choices(OPS, weights=self.weights)[0]
        if op == "cancel":
            if self.resting:
                token_index, order_id = self.resting.pop()  # the newest: like a quote being replaced
                return op, f"/api/orders/{order_id}/cancel", token_index, None
            op = "limit_gtc"  # nothing of ours rests yet
        self.turn += 1
        token_index = self.turn % len(self.tokens)
        market = self.markets[self.rnd.randrange(len(self.markets))]
        side = self.rnd.choice(("buy", "sell"))
        body: dict[str, Any] = {"market": market.symbol, "side": side, "quantity": market.quantity(self.rnd)}
        sign = 1 if side == "buy" else -1
        if op == "limit_gtc":
            # Three in four rest passively on their own side of the reference, one in four
            # crosses it (and trades with what rests on the other side).
            distance = abs(self.rnd.gauss(0, market.spread_ticks))
            offset = -distance if self.rnd.random() < 0.75 else distance / 2
            body.update(type="limit", price=market.price(market.ref_ticks + round(sign * offset)), time_in_force="GTC")
        elif op == "market_ioc":
            body.update(type="market", time_in_force="IOC")
        else:  # FOK limit, priced to cross the book around the reference
            body.update(
                type="limit", price=market.price(market.ref_ticks + sign * market.spread_ticks), time_in_force="FOK"
            )
        return op, "/api/orders", token_index, body

    def run(self) -> None:
        stats = self.stats
        while True:
            now = time.perf_counter()
            if now >= self.stop_at:
                break
            op, path, token_index, body = self._next()
            began = time.perf_counter()
            try:
                status, data = self._request(path, self.tokens[token_index], body)
            except (OSError, HttpError):
                stats.errors += 1
                time.sleep(0.05)
                continue
            ended = time.perf_counter()
            stats.sent += 1
            if op == "limit_gtc" and status == 201:
                order = json.loads(data)
                if order.get("status") in ("open", "partially_filled"):
                    self.resting.append((token_index, order["id"]))
                    if len(self.resting) > 500:
                        self.resting.pop(0)
            if self.window[0] <= ended < self.window[1]:
                latency = (ended - began) * 1000
                stats.statuses[f"{op}:{status}"] += 1
                if 200 <= status < 300:
                    stats.latencies.append(latency)
                    stats.by_op[op].append(latency)
        self.conn.close()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except OSError:
        return 0.0


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    config_path, result_path = argv[1], argv[2]
    with open(config_path) as handle:
        config = json.load(handle)
    markets = [Market(**{**m, "qty_units": tuple(m["qty_units"])}) for m in config["markets"]]
    watched = [int(pid) for pid in config.get("watch_pids", [])]
    start = time.perf_counter() + 0.2
    clients = [Client(i, config, markets, start) for i in range(len(config["clients"]))]
    for client in clients:
        client.start()
    window_start = start + float(config["warmup_s"])
    window_end = window_start + float(config["measure_s"])
    time.sleep(max(0.0, window_start - time.perf_counter()))
    cpu0, watched0, machine0, t0 = _self_cpu(), {p: _proc_cpu(p) for p in watched}, _machine_cpu(), time.perf_counter()
    time.sleep(max(0.0, window_end - time.perf_counter()))
    cpu1, watched1, machine1, t1 = _self_cpu(), {p: _proc_cpu(p) for p in watched}, _machine_cpu(), time.perf_counter()
    for client in clients:
        client.join(timeout=60)
    seconds = t1 - t0
    latencies = [lat for c in clients for lat in c.stats.latencies]
    statuses: Counter[str] = Counter()
    for c in clients:
        statuses.update(c.stats.statuses)
    by_op = {op: [lat for c in clients for lat in c.stats.by_op[op]] for op in OPS}
    machine_busy = (machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1.0)
    result = {
        "window_s": seconds,
        "ok": len(latencies),
        "non_2xx": sum(n for key, n in statuses.items() if not key.split(":")[1].startswith("2")),
        "errors": sum(c.stats.errors for c in clients),
        "orders_per_s": len(latencies) / seconds if seconds > 0 else 0.0,
        "mean_ms": sum(latencies) / len(latencies) if latencies else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=0.0),
        "by_op": {
            op: {"count": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)} for op, v in by_op.items()
        },
        "statuses": dict(sorted(statuses.items())),
        "loadgen_cpu_s": cpu1 - cpu0,
        "loadgen_cpu_percent": 100 * (cpu1 - cpu0) / seconds if seconds > 0 else 0.0,
        "watched_cpu_percent": {
            str(p): 100 * (watched1[p] - watched0[p]) / seconds if seconds > 0 else 0.0 for p in watched
        },
        "machine_busy_percent": 100 * machine_busy,
        "machine_cores": os.cpu_count() or 1,
    }
    with open(result_path, "w") as handle:
        json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
