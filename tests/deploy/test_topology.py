"""The Procfile and its runner (config/topology.py): every process of the topology is named
once with the queue and concurrency it must have, honcho's engine.i becomes the engine of
the i-th shard; and, with stand-in processes under the real supervisor, the stop order and
the restart of a process that exits while the others serve on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from config import topology
from tests.deploy.processes import Served, json_lines, pid_alive
from tests.waiting import wait_until

# The test run's own services: scripts/run uses its embedded defaults without them.
RUN_TEST_ONLY = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG")


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


def test_make_runs_procfile_names_the_embedded_processes_each_with_its_log() -> None:
    """scripts/run runs Procfile.local under the same supervisor: one worker for both queues,
    unforked (the embedded chain lives inside it); every line logs to its own file."""
    processes = topology.procfile_processes(topology.ROOT / "Procfile.local")
    assert list(processes) == ["web", "engine", "worker", "beat"]  # web first: honcho gives it PORT itself
    assert "uvicorn config.asgi:application" in processes["web"] and '--port "$PORT"' in processes["web"]
    assert "-m config.topology engine" in processes["engine"]
    worker = processes["worker"].split()
    assert worker[worker.index("-Q") + 1] == "celery,chain" and "--pool=solo" in worker
    for name, command in processes.items():
        assert command.startswith("exec ") and command.endswith(f'>>"$VAR_DIR/log/{name}.log" 2>&1'), command


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


def test_the_restart_delay_doubles_after_each_short_run_up_to_its_ceiling() -> None:
    delays = [topology.restart_delay(n, maximum=30) for n in range(1, 8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert topology.restart_delay(3, maximum=5) == 4 and topology.restart_delay(4, maximum=5) == 5


# An engine as far as the topology and /metrics see it: sets its queue-depth gauge (42 on its
# first run, 7 on later ones), says so, and serves until SIGTERM (then exits 0).
FAKE_ENGINE = (
    "exec {python} -c '"
    "import os, pathlib, signal, sys, time; from core import metrics; "
    'first = pathlib.Path("{marker}"); depth = 7 if first.exists() else 42; first.touch(); '
    'metrics.ENGINE_QUEUE_DEPTH.set(depth); print(f"engine depth {{depth}} pid {{os.getpid()}}", flush=True); '
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
    "[time.sleep(0.05) for _ in iter(int, 1)]'"
)


def exposed(directory: Path, sample: str) -> float | None:
    """The value of `sample` summed over the processes' files, as the web's /metrics reads them."""
    text = MultiProcessCollector(None, path=str(directory)).collect()
    for metric in text:
        for found in metric.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(found.labels.items()))
            if (f"{found.name}{{{labels}}}" if labels else found.name) == sample:
                return float(found.value)
    return None


@pytest.mark.timeout(90)
def test_an_engine_that_exits_is_started_again_while_the_rest_serves_on(tmp_path) -> None:
    """One process exiting (an engine's watchdog, SIGKILL) took every other one down with it
    under honcho, web included. Now it alone starts again, the others keep their pids, its
    queue depth leaves /metrics with it (mark_process_dead), the restart is logged as a JSON
    line and counted, and a SIGTERM afterwards still stops everything cleanly with status 0."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    log = tmp_path / "stops.log"
    procfile = tmp_path / "Procfile"
    engine = FAKE_ENGINE.format(python=sys.executable, marker=tmp_path / "first-run")
    procfile.write_text(
        f"web: {STOPPING.format(name='web', log=log, delay=0)}\n"
        f"engine: {engine}\n"
        f"worker: {STOPPING.format(name='worker', log=log, delay=0)}\n"
    )
    output = tmp_path / "topology.log"
    script = (
        "import sys; from pathlib import Path; from config import topology; "
        f"sys.exit(topology.start(procfile=Path({str(procfile)!r})))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "SERVE_STOP_TIMEOUT": "20",
        "LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "ENGINE_SHARDS": "main=*@ipc:///tmp/unused.sock",
        "PYTHONUNBUFFERED": "1",
    }
    with open(output, "wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-c", script], cwd=topology.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        served = Served(env=env, log_path=output)

        def engine_with_depth(depth: int) -> int | None:
            assert runner.poll() is None, output.read_text()
            lines = [line for line in output.read_text().splitlines() if line.startswith(f"engine depth {depth} ")]
            return int(lines[-1].rsplit(" ", 1)[1]) if lines else None

        first = wait_until(lambda: engine_with_depth(42), what="the engine's first run", timeout=30)
        started = wait_until(
            lambda: (found := served.started()).keys() == {"web.1", "engine.1", "worker.1"} and found,
            what="every process started",
            timeout=30,
        )
        assert started["engine.1"] == first
        assert exposed(metrics_dir, "platform_engine_queue_depth") == 42
        assert exposed(metrics_dir, 'platform_process_restarts_total{process="engine"}') == 0

        os.kill(first, signal.SIGKILL)  # as the watchdog ends it: no clean-up of its own
        second = wait_until(lambda: engine_with_depth(7), what="the engine started again", timeout=30)
        assert second != first
        restarted = served.started()
        assert restarted["engine.1"] == second
        assert {name: restarted[name] for name in ("web.1", "worker.1")} == {
            name: started[name] for name in ("web.1", "worker.1")
        }, "the others went on, as they were"
        assert all(pid_alive(started[name]) for name in ("web.1", "worker.1"))
        assert not (metrics_dir / f"gauge_livemax_{first}.db").exists()  # the dead engine's 42 is gone
        assert exposed(metrics_dir, "platform_engine_queue_depth") == 7
        assert exposed(metrics_dir, 'platform_process_restarts_total{process="engine"}') == 1
        exited = [line for line in json_lines(output) if line.get("event") == "exited"]
        assert exited and exited[0]["logger"] == "config.topology" and exited[0]["level"] == "WARNING"
        assert exited[0]["process_name"] == "engine.1" and exited[0]["returncode"] == -signal.SIGKILL
        assert exited[0]["restart_in_s"] == 1

        runner.send_signal(signal.SIGTERM)
        code = runner.wait(timeout=40)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(timeout=10)
    text = output.read_text()
    assert code == 0, text
    assert served.stopped() == {"web.1": 0, "engine.1": 0, "worker.1": 0}, text
    assert "topology stopped cleanly" in text
    assert not (metrics_dir / f"gauge_livemax_{second}.db").exists()
    assert not any(pid_alive(pid) for pid in (second, started["web.1"], started["worker.1"]))


def _make_run_refused(env: dict[str, str]) -> tuple[int | None, str, str]:
    """scripts/run with `env` (its embedded defaults, not the test run's services), expected to
    stop at once: its return code and output. Should it go on, its EXIT trap stops what it
    started once SIGTERM ends it."""
    env = {key: value for key, value in os.environ.items() if key not in RUN_TEST_ONLY} | env
    run = subprocess.Popen(
        [str(topology.ROOT / "scripts" / "run")], cwd=topology.ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            run.communicate(timeout=90)
    return run.returncode, out.decode(), err.decode()


def test_make_run_refuses_a_port_another_program_holds(tmp_path) -> None:
    """scripts/run on a port another program listens on: its web exited at each start ("Address
    already in use", in web.log only) and was restarted in a loop, while the script announced
    "Platform running" at that address, which the other program answered. It now says so and
    stops before starting anything."""
    var_dir = tmp_path / "var"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out, err = _make_run_refused({"PORT": str(port), "VAR_DIR": str(var_dir)})
    assert code == 1, (out, err)
    assert f"Port {port} on 127.0.0.1 is in use by another program" in err, err
    assert "PORT=8001 make run" in err
    assert "Platform running" not in out
    assert not (var_dir / "log" / "web.log").exists()  # nothing was started


def test_make_run_refuses_a_port_that_is_no_number(tmp_path) -> None:
    code, out, err = _make_run_refused({"PORT": "80a", "VAR_DIR": str(tmp_path / "var")})
    assert code == 1 and "PORT=80a is not a port number." in err, (out, err)


def test_a_log_file_past_its_size_is_rotated_and_its_writer_goes_on_at_its_start(tmp_path) -> None:
    """`make run`'s processes append to var/log/*.log (`>>`) for as long as it runs (3.6 MB a
    day idle, plus a line per order event), and nothing rotated them. Past its size one is
    copied to NAME.log.1 and emptied in place; a writer that opened it to append goes on at
    its new end (no hole of the old size before its next line)."""
    path = tmp_path / "worker.log"
    with open(path, "ab", buffering=0) as writer:  # as the shell's >> opens it
        writer.write(b"x" * 2000)
        assert topology.log_files_rotate(tmp_path, max_bytes=1000) == [path]
        writer.write(b"after\n")
    assert path.read_bytes() == b"after\n"
    assert (tmp_path / "worker.log.1").read_bytes() == b"x" * 2000
    assert topology.log_files_rotate(tmp_path, max_bytes=1000) == []  # small again: left alone


@pytest.mark.timeout(60)
def test_the_supervisor_rotates_its_processes_logs(tmp_path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    procfile = tmp_path / "Procfile"
    loop = "while :; do echo 0123456789012345678901234567890123456789; sleep 0.01; done"
    procfile.write_text(f"""writer: sh -c 'trap "exit 0" TERM; {loop}' >>"{logs}/writer.log" 2>&1\n""")
    script = (
        "import sys; from pathlib import Path; from config import topology; "
        f"sys.exit(topology.start(procfile=Path({str(procfile)!r})))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "SERVE_STOP_TIMEOUT": "20"}
    env |= {
        "TOPOLOGY_LOG_DIR": str(logs),
        "LOG_FILE_MAX_BYTES": "4000",
        "ENGINE_SHARDS": "main=*@ipc:///tmp/unused.sock",
    }
    env.pop("LOG_FORMAT", None)
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=topology.ROOT, env=env, stdout=subprocess.PIPE, text=True
    ) as runner:
        wait_until(lambda: (logs / "writer.log.1").exists(), timeout=30, what="the log rotated")
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=40)
    assert "writer.log rotated to writer.log.1" in output
    assert (logs / "writer.log.1").stat().st_size > 4000
    assert (logs / "writer.log").stat().st_size < 40_000  # emptied, then written on from its start
    assert b"\0" not in (logs / "writer.log").read_bytes()
