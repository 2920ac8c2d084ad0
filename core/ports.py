"""Whether the web's address is free, checked before a topology starts anything (`make run`:
scripts/run; the production one: `manage.py serve_check`). Held by another program (another
run, another server), the web exited at each start ("Address already in use", in its log
only) and was started again in a loop, while the rest announced a platform that another
program answered.

`python -m core.ports HOST:PORT` exits 1 with the reason when the address cannot be bound."""

from __future__ import annotations

import os
import socket
import sys


def web_bind() -> str:
    """The web's address (config/gunicorn.py binds it): WEB_BIND, else 127.0.0.1:$PORT (8000)."""
    return os.environ.get("WEB_BIND") or f"127.0.0.1:{os.environ.get('PORT') or '8000'}"


def bind_problem(address: str) -> str | None:
    """Why `address` ("host:port", "[v6]:port"; a unix socket is not checked) cannot be bound
    now, else None. Bound as the web servers bind (SO_REUSEADDR: a finished run's
    connections in TIME_WAIT own nothing)."""
    if address.startswith("unix:"):
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 (":8000" binds every interface: probed as such)
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"PORT={port} is not a port number."
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, int(port)))
    except OSError as exc:
        return f"Port {port} on {host} is in use by another program ({exc.strerror})."
    finally:
        probe.close()
    return None


if __name__ == "__main__":
    problem = bind_problem(sys.argv[1])
    if problem:
        sys.exit(problem)
