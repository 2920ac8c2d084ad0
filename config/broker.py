"""The Celery broker's Redis transport: kombu's, with one fix, so that a worker outlives a
Redis outage. `broker_redis_transport_register()` (config/celery.py, in every process) makes
it the transport of redis:// and rediss:// broker URLs.

A worker that loses its connection to Redis while it holds unacknowledged messages (a task
with an ETA, such as the post-trade and delivery runs, is held until then) closes the
connection and reconnects. kombu 5.7 closes the transport first, then the channel, whose
close puts those messages back on a fresh pool built from the transport's parameters, which
are gone by then: AttributeError ('NoneType' object has no attribute 'hostname'), not a
connection error, so Celery logs "Unrecoverable error" and the worker exits (under
`scripts/serve` every other process with it). Here the channel reports a closed transport
as the connection error it is: the worker reconnects once Redis answers, and the messages it
held come back after the visibility timeout (tests/config/test_broker.py)."""

from __future__ import annotations

from typing import Any

from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # not in the stubs


class Transport(kombu_redis.Transport):
    Channel = Channel


def broker_redis_transport_register() -> None:
    for scheme in ("redis", "rediss"):
        kombu_transport.TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
