"""The Procfile and its runner (config/topology.py) without starting anything: every
process of the topology is named once with the queue and concurrency it must have, and
honcho's engine.i becomes the engine of the i-th shard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from config import topology


def test_the_procfile_names_every_process_of_the_topology() -> None:
    processes = topology.procfile_processes()
    assert list(processes) == ["web", "engine", "worker", "chain", "beat"]
    assert "gunicorn -c config/gunicorn.py config.asgi:application" in processes["web"]
    assert "-m config.topology engine" in processes["engine"]
    worker, chain = processes["worker"].split(), processes["chain"].split()
    assert worker[worker.index("-Q") + 1] == "celery"
    assert chain[chain.index("-Q") + 1] == "chain"  # the one sender
    assert chain[chain.index("--concurrency") + 1] == "1" and chain[chain.index("--pool") + 1] == "solo"
    assert "beat" in processes["beat"].split()
    # a process exec'd by the shell receives honcho's SIGTERM itself
    assert all(command.startswith("exec ") for command in processes.values())


@pytest.mark.parametrize(("instance", "shard"), [("engine.1", "eth"), ("engine.2", "rest")])
def test_each_engine_instance_runs_its_shard(monkeypatch, settings, instance: str, shard: str) -> None:
    settings.ENGINE_SHARDS = "eth=ETH-USDT@ipc:///tmp/a.sock;rest=*@ipc:///tmp/b.sock"
    calls: list[list[str]] = []
    monkeypatch.setattr(topology.os, "execv", lambda path, argv: calls.append(argv))
    monkeypatch.setenv("HONCHO_PROCESS_NAME", instance)
    monkeypatch.delenv("ENGINE_SHARD", raising=False)
    topology.engine_exec()
    assert calls[0][-4:] == ["manage.py", "engine", "--shard", shard] or calls[0][-3:] == ["engine", "--shard", shard]
    assert len(topology.engine_shard_names()) == 2  # honcho starts engine.1 and engine.2


def test_engine_shard_overrides_the_instance(monkeypatch, settings) -> None:
    settings.ENGINE_SHARDS = "eth=ETH-USDT@ipc:///tmp/a.sock;rest=*@ipc:///tmp/b.sock"
    calls: list[list[str]] = []
    monkeypatch.setattr(topology.os, "execv", lambda path, argv: calls.append(argv))
    monkeypatch.setenv("ENGINE_SHARD", "rest")
    topology.engine_exec()
    assert calls[0][-2:] == ["--shard", "rest"]


def test_an_instance_beyond_the_shards_refuses_to_start(monkeypatch, settings) -> None:
    settings.ENGINE_SHARDS = "main=*@ipc:///tmp/a.sock"
    monkeypatch.setattr(topology.os, "execv", lambda path, argv: pytest.fail("must not start"))
    monkeypatch.setenv("HONCHO_PROCESS_NAME", "engine.2")
    monkeypatch.delenv("ENGINE_SHARD", raising=False)
    with pytest.raises(SystemExit, match="1 shard"):
        topology.engine_exec()


STOPPING = (  # a process that takes `delay` seconds to stop and writes when it got SIGTERM and when it left
    'exec sh -c \'trap "echo {name} term >> {log}; sleep {delay}; echo {name} exit >> {log}; exit 0" TERM; '
    "while :; do sleep 0.05; done'"
)


@pytest.mark.timeout(60)
def test_a_stop_reaches_the_engines_only_after_the_web_has_answered_and_exited(tmp_path) -> None:
    """The web's requests in progress wait for an engine's answer: an engine stopped at the same
    time commits its last batch, but its answers are lost with its socket and the clients get
    503 for orders that were placed (seen with scripts/serve under load: 3 of them). So the web
    stops first, then the engines, then the workers."""
    log = tmp_path / "stops.log"
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "".join(
            f"{name}: {STOPPING.format(name=name, log=log, delay=delay)}\n"
            for name, delay in (("web", 1), ("engine", 0.2), ("worker", 0))
        )
    )
    script = (
        "import sys; from pathlib import Path; from config import topology; "
        f"sys.exit(topology.start(procfile=Path({str(procfile)!r})))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "SERVE_STOP_TIMEOUT": "20"}
    env.pop("LOG_FORMAT", None)
    env["ENGINE_SHARDS"] = "main=*@ipc:///tmp/unused.sock"
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=topology.ROOT, env=env, stdout=subprocess.PIPE, text=True
    ) as runner:
        time.sleep(3)  # every process started and its trap installed (no output to wait for)
        assert runner.poll() is None
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=40)
    assert runner.returncode == 0, output
    events = log.read_text().split("\n")[:-1]
    assert events.index("web exit") < events.index("engine term"), events
    assert events.index("engine exit") < events.index("worker term"), events
    assert "topology stopped cleanly" in output
