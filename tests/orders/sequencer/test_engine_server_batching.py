"""How the engine process forms its batches (orders.sequencer.server.EngineServer._serve),
with a stand-in sequencer that records each batch: the clients the last batch answered are
waited for (group commit, at most ENGINE_BATCH_LINGER_SECONDS after it ended), an engine
idle that long starts at once; the database connection is checked before a batch only after
an idle spell or an error, not before every batch."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest
import zmq
from prometheus_client import REGISTRY

from orders.sequencer import server as server_module
from orders.sequencer.commands import command_signature
from orders.sequencer.server import EngineServer
from orders.sequencer.shards import Shard


class RecordingSequencer:
    """Batches recorded, each answered at once (no batch is ever left on its way)."""

    in_flight = False

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def run_batch(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.batches.append([int(command["n"]) for command in commands])
        return [{"status": 200, "n": command["n"]} for command in commands]

    def run(self, commands: list[dict[str, Any]]) -> list[tuple[list[Any], list[Any]]]:
        return [(commands, self.run_batch(commands))]

    def flush(self) -> list[tuple[list[Any], list[Any]]]:
        return []


@pytest.fixture
def sockets(tmp_path):
    context = zmq.Context.instance()
    endpoint = f"ipc://{tmp_path}/engine.sock"
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    yield router, dealer
    dealer.close(linger=0)
    router.close(linger=0)


@pytest.fixture
def engine(settings, tmp_path, monkeypatch):
    settings.ENGINE_BATCH_MAX = 200
    # No database here (the stand-in sequencer writes nothing): the connection check is a no-op.
    monkeypatch.setattr(server_module, "close_old_connections", lambda: None)
    server = EngineServer(shard=Shard(name="main", markets=frozenset(), endpoints=(f"ipc://{tmp_path}/engine.sock",)))
    return server


def send(dealer: zmq.Socket[bytes], n: int) -> None:
    payload = json.dumps({"op": "place", "n": n}).encode()
    dealer.send_multipart([os.urandom(8), payload, command_signature(payload)])


def wait_readable(router: zmq.Socket[bytes]) -> None:
    assert router.poll(2000), "the command did not arrive"


def serve_two(engine: EngineServer, router: zmq.Socket[bytes], dealer: zmq.Socket[bytes], sequencer: Any) -> None:
    """Commands 1 and 2 sent, then served: in one batch, or two when the second arrived
    during the first."""
    send(dealer, 1)
    send(dealer, 2)
    for _ in range(2):
        if sum(map(len, sequencer.batches)) == 2:
            break
        if not engine._pending:
            wait_readable(router)
        engine._serve(router, sequencer)


def answers(dealer: zmq.Socket[bytes], count: int) -> list[int]:
    got = []
    for _ in range(count):
        assert dealer.poll(2000)
        _, payload = dealer.recv_multipart()
        got.append(json.loads(payload)["n"])
    return got


def test_a_batch_waits_for_the_clients_the_last_one_answered(engine, sockets, settings):
    router, dealer = sockets
    settings.ENGINE_BATCH_LINGER_SECONDS = 2.0  # long: the test shows the batch does not start without them
    sequencer = RecordingSequencer()
    # The last batch answered three clients just now; one is back, two follow 50 ms later.
    engine._batch_ended, engine._wanted = time.monotonic(), 3
    send(dealer, 1)
    wait_readable(router)
    later = threading.Timer(0.05, lambda: (send(dealer, 2), send(dealer, 3)))
    later.start()
    began = time.monotonic()
    engine._serve(router, sequencer)
    later.join()
    assert sequencer.batches == [[1, 2, 3]]
    assert time.monotonic() - began < 1.0, "waited past the last client expected"
    assert sorted(answers(dealer, 3)) == [1, 2, 3]
    assert engine._wanted == 3  # the next batch waits for the three it answered


def test_the_wait_is_bounded_by_the_linger(engine, sockets, settings):
    router, dealer = sockets
    settings.ENGINE_BATCH_LINGER_SECONDS = 0.05
    sequencer = RecordingSequencer()
    engine._batch_ended, engine._wanted = time.monotonic(), 8  # eight answered, one comes back
    send(dealer, 1)
    wait_readable(router)
    began = time.monotonic()
    engine._serve(router, sequencer)
    waited = time.monotonic() - began
    assert sequencer.batches == [[1]]
    assert waited < 0.5, f"waited {waited:.3f} s for clients that did not come"


def test_an_idle_engine_starts_at_once(engine, sockets, settings):
    router, dealer = sockets
    settings.ENGINE_BATCH_LINGER_SECONDS = 2.0
    sequencer = RecordingSequencer()
    engine._batch_ended, engine._wanted = time.monotonic() - 5.0, 8  # the last batch was long ago
    send(dealer, 1)
    wait_readable(router)
    began = time.monotonic()
    engine._serve(router, sequencer)
    assert sequencer.batches == [[1]]
    assert time.monotonic() - began < 0.5


def test_commands_that_arrive_during_a_batch_go_into_the_next_in_order(engine, sockets, settings):
    router, dealer = sockets
    settings.ENGINE_BATCH_LINGER_SECONDS = 0.0
    sent_during = threading.Event()

    class Slow(RecordingSequencer):
        def run_batch(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not self.batches:
                send(dealer, 2)
                send(dealer, 3)
                time.sleep(0.05)  # they arrive while the batch runs
                sent_during.set()
            return super().run_batch(commands)

    sequencer = Slow()
    send(dealer, 1)
    wait_readable(router)
    engine._serve(router, sequencer)
    assert sent_during.is_set()
    assert [n for _, _, command, _ in engine._pending for n in [command["n"]]] == [2, 3]
    assert engine._wanted == 3  # two waiting plus the one answered
    send(dealer, 4)
    time.sleep(0.05)
    engine._serve(router, sequencer)
    assert sequencer.batches == [[1], [2, 3, 4]]
    assert answers(dealer, 4) == [1, 2, 3, 4]


def test_the_connection_is_checked_after_an_idle_spell_not_before_every_batch(engine, sockets, settings, monkeypatch):
    router, dealer = sockets
    settings.ENGINE_BATCH_LINGER_SECONDS = 0.0
    checks: list[float] = []
    monkeypatch.setattr(server_module, "close_old_connections", lambda: checks.append(time.monotonic()))
    monkeypatch.setattr(server_module, "CONNECTION_CHECK_IDLE_SECONDS", 0.2)
    errors = {"occurred": False}
    monkeypatch.setattr(server_module, "_errors_occurred", lambda: errors["occurred"])
    sequencer = RecordingSequencer()

    def batch(n: int) -> None:
        send(dealer, n)
        wait_readable(router)
        engine._serve(router, sequencer)

    batch(1)  # the first batch: checked
    batch(2)  # back to back: not checked
    batch(3)
    assert len(checks) == 1
    time.sleep(0.3)
    batch(4)  # after an idle spell: checked
    assert len(checks) == 2
    errors["occurred"] = True
    batch(5)  # a statement failed since: checked
    assert len(checks) == 3
    assert sequencer.batches == [[1], [2], [3], [4], [5]]


def test_each_commands_time_in_the_engine_is_measured_to_its_answer(engine, sockets, settings):
    """platform_engine_command_seconds: from the command read off the socket to its answer
    sent, one observation per command (here batches that take 50 ms each)."""
    router, dealer = sockets
    settings.ENGINE_BATCH_LINGER_SECONDS = 0

    class Slow(RecordingSequencer):
        def run_batch(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
            time.sleep(0.05)
            return super().run_batch(commands)

    count = REGISTRY.get_sample_value("platform_engine_command_seconds_count") or 0.0
    total = REGISTRY.get_sample_value("platform_engine_command_seconds_sum") or 0.0
    sequencer = Slow()
    serve_two(engine, router, dealer, sequencer)
    assert answers(dealer, 2) == [1, 2]
    assert REGISTRY.get_sample_value("platform_engine_command_seconds_count") == count + 2
    spent = (REGISTRY.get_sample_value("platform_engine_command_seconds_sum") or 0.0) - total
    assert 2 * 0.05 <= spent < 2 * 5


def test_what_follows_a_commit_goes_to_the_announcer_once_the_batchs_answers_are_sent(engine, sockets, settings):
    """The sequencer's announce hook (after each commit: metrics, lifecycle lines, the
    post-trade task, the streams' message) only holds the work during the batch; the
    announcer thread gets it after every answer of the batch was sent and measured, so it
    does not take the interpreter from the answers."""
    router, dealer = sockets
    settings.ENGINE_BATCH_LINGER_SECONDS = 0
    announce = engine._sequencer_new().announce
    answered = "platform_engine_command_seconds_count"
    submitted: list[float] = []

    class Recording:
        def submit(self, work: Any, *args: Any) -> None:
            submitted.append(REGISTRY.get_sample_value(answered) or 0.0)
            work(*args)

    engine._announcer = Recording()
    ran: list[int] = []

    class Committing(RecordingSequencer):
        def run_batch(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
            handed = len(submitted)  # by the batches before this one
            for command in commands:
                announce(lambda n=command["n"]: ran.append(n))
            assert len(submitted) == handed, "handed over during the batch"
            return super().run_batch(commands)

    before = REGISTRY.get_sample_value(answered) or 0.0
    sequencer = Committing()
    serve_two(engine, router, dealer, sequencer)
    assert answers(dealer, 2) == [1, 2]
    assert ran == [1, 2]  # in the order announced
    # Handed over once per batch, once the batch's answers had been sent.
    assert len(submitted) == len(sequencer.batches)
    sent = 0
    for batch, count in zip(sequencer.batches, submitted, strict=True):
        sent += len(batch)
        assert count >= before + sent


def test_a_batchs_work_after_its_commit_is_handed_over_once_and_one_failure_does_not_stop_the_rest(
    engine, sockets, settings, caplog
):
    """Several pieces of work announced by one batch (metrics and lines, the streams'
    message, ...) reach the announcer thread in one hand-over, run in order; one that raises
    is logged with its traceback and the others still run."""
    router, dealer = sockets
    settings.ENGINE_BATCH_LINGER_SECONDS = 0
    announce = engine._sequencer_new().announce
    handed: list[int] = []

    class Recording:
        def submit(self, work: Any, *args: Any) -> None:
            handed.append(len(args[0]))
            work(*args)

    engine._announcer = Recording()
    ran: list[str] = []

    def failing() -> None:
        raise RuntimeError("the broker said no")

    class Committing(RecordingSequencer):
        def run_batch(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
            announce(lambda: ran.append("metrics"))
            announce(failing)
            announce(lambda: ran.append("streams"))
            return super().run_batch(commands)

    send(dealer, 1)
    wait_readable(router)
    engine._serve(router, Committing())
    assert answers(dealer, 1) == [1]
    assert handed == [3]
    assert ran == ["metrics", "streams"]
    [failure] = [record for record in caplog.records if record.getMessage() == "work after a commit failed"]
    assert failure.exc_info is not None and "the broker said no" in str(failure.exc_info[1])
