"""The production topology: every process of the Procfile, under honcho.

    python -m config.topology          # what scripts/serve execs after its checks
    python -m config.topology engine   # one engine: the Procfile's `engine` line

`start` (the default) runs each Procfile line once, except `engine`: one per shard of
ENGINE_SHARDS (honcho names them engine.1 .. engine.N; `engine` maps engine.i to the i-th
shard). If any process exits, honcho stops the others: a supervisor (systemd, the
container platform) restarts the whole. SIGTERM or SIGINT stops them in STOP_ORDER: the
web first (requests in progress finish, the engines still answering them), then the
engines (each commits its batch), then the Celery workers (they finish their tasks) and
beat; whatever has not stopped SERVE_STOP_TIMEOUT seconds (60) after the stop began is killed. Exits
0 when it was asked to stop and every process stopped cleanly, else non-zero.

With LOG_FORMAT=json the process-name prefix is left out, so that every line a process
writes stays one JSON object (its `logger` and `pid` say where it comes from)."""

from __future__ import annotations

import datetime
import os
import queue
import signal
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from honcho import environ
from honcho import manager as honcho_manager
from honcho.manager import Manager
from honcho.printer import Printer

from orders.sequencer.shards import shards  # ENGINE_SHARDS, from the Django settings

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
STOP_SIGNAL_CODES = {130, 143}  # honcho's exit status after SIGINT / SIGTERM
# The order in which a stop reaches the processes (the rest come last, together). The web
# first: a request in progress waits for its engine's answer, so the engines must still
# serve until every web worker has answered and exited (an engine stopped at the same
# time commits its last batch, but its answers may never reach the web: the clients got
# 503 for orders that were placed). Then the engines, whose post-trade jobs the Celery
# workers carry out; the workers finish what is queued and running.
STOP_ORDER = ("web", "engine")


def procfile_processes(path: Path = PROCFILE) -> OrderedDict[str, str]:
    return environ.parse_procfile(path.read_text()).processes


def engine_shard_names() -> list[str]:
    return [shard.name for shard in shards()]


def engine_exec() -> None:
    """Become `manage.py engine --shard NAME` for this instance's shard: ENGINE_SHARD if set
    (a supervisor that starts one engine per unit), else the i-th shard for honcho's engine.i."""
    name = os.environ.get("ENGINE_SHARD", "")
    if not name:
        instance = os.environ.get("HONCHO_PROCESS_NAME", "engine.1").rpartition(".")[2]
        names = engine_shard_names()
        index = int(instance) - 1 if instance.isdigit() else 0
        if not 0 <= index < len(names):
            raise SystemExit(f"engine instance {instance}: ENGINE_SHARDS names {len(names)} shard(s)")
        name = names[index]
    manage = str(ROOT / "manage.py")
    os.execv(sys.executable, [sys.executable, manage, "engine", "--shard", name])  # noqa: S606 - fixed argv


def stop_stage(name: str) -> int:
    """When the process `name` (honcho's `web.1`) is sent SIGTERM: its place in STOP_ORDER."""
    kind = name.rpartition(".")[0] or name
    return STOP_ORDER.index(kind) if kind in STOP_ORDER else len(STOP_ORDER)


class StagedManager(Manager):
    """honcho's Manager, but a stop goes through STOP_ORDER: SIGTERM to the web, then to the
    engines once every web process exited, then to the rest. honcho 2.0 sends it to every
    process at once and has no hook for an order, so its loop is repeated here with one
    change (`_stop_next`); whatever is left SERVE_STOP_TIMEOUT after the stop began is killed."""

    _terminating: bool  # honcho's flag: a stop has begun

    def loop(self) -> None:
        def _terminate(signum: int, frame: Any) -> None:
            self._system_print(f"{honcho_manager.SIGNALS[signum]['name']} received\n")
            self.returncode = honcho_manager.SIGNALS[signum]["rc"]
            self.terminate()

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        self._start()
        exit_now = False
        stop_began: datetime.datetime | None = None
        while True:
            try:
                msg = self.events.get(timeout=0.1)
            except queue.Empty:
                if exit_now:
                    break
            else:
                if msg.type == "line":
                    self._printer.write(msg)
                elif msg.type == "start":
                    self._processes[msg.name]["pid"] = msg.data["pid"]
                    self._system_print(f"{msg.name} started (pid={msg.data['pid']})\n")
                elif msg.type == "stop":
                    self._processes[msg.name]["returncode"] = msg.data["returncode"]
                    self._system_print(f"{msg.name} stopped (rc={msg.data['returncode']})\n")
                    if self.returncode is None:
                        self.returncode = msg.data["returncode"]
            if self._all_started() and self._all_stopped():
                exit_now = True
            if self._all_started() and self._any_stopped():
                self.terminate()  # one process ended: stop the others (honcho's rule)
            if self._terminating:
                stop_began = stop_began or self._clock.now()
                self._stop_next()
                if self._clock.now() - stop_began > datetime.timedelta(seconds=honcho_manager.KILL_WAIT):
                    self.kill()

    def terminate(self) -> None:
        if not self._terminating:
            self._terminating = True
            self._stop_next()

    def _stop_next(self) -> None:
        """SIGTERM to the processes of the first stage that still runs, once each."""
        running = [name for name, state in self._processes.items() if "returncode" not in state and "pid" in state]
        if not running:
            return
        stage = min(stop_stage(name) for name in running)
        for name in running:
            state = self._processes[name]
            if stop_stage(name) == stage and not state.get("sent_stop"):
                state["sent_stop"] = True
                self._system_print(f"sending SIGTERM to {name} (pid {state['pid']})\n")
                self._procmgr.terminate(state["pid"])


def start(*, procfile: Path = PROCFILE) -> int:
    honcho_manager.KILL_WAIT = int(os.environ.get("SERVE_STOP_TIMEOUT") or 60)
    json_lines = os.environ.get("LOG_FORMAT") == "json"
    manager = StagedManager(Printer(sys.stdout, colour=False, prefix=not json_lines))
    concurrency = {"engine": len(engine_shard_names())}
    port = int(os.environ.get("PORT") or 8000)
    for process in environ.expand_processes(procfile_processes(procfile), concurrency=concurrency, env={}, port=port):
        process_env = os.environ.copy()
        process_env.update(process.env)
        manager.add_process(process.name, process.cmd, quiet=process.quiet, env=process_env, cwd=str(ROOT))
    manager.loop()
    # honcho keeps each process's exit status here (no public accessor in honcho 2.0).
    codes = {name: state.get("returncode") for name, state in manager._processes.items()}
    clean = manager.returncode in STOP_SIGNAL_CODES and all(code == 0 for code in codes.values())
    summary = " ".join(f"{name}={code}" for name, code in codes.items())
    print(f"topology stopped {'cleanly' if clean else 'with errors'}: {summary}", flush=True)
    if clean:
        return 0
    return manager.returncode or 1


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    if command == "engine":
        engine_exec()
    if command == "start":
        return start()
    print(f"usage: python -m config.topology [start|engine], not {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    raise SystemExit(main(sys.argv))
