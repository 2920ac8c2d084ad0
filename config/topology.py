"""The production topology: every process of the Procfile, under honcho.

    python -m config.topology                          # what scripts/serve execs after its checks
    python -m config.topology start Procfile.local     # what scripts/run (make run) starts
    python -m config.topology engine                   # one engine: the Procfile's `engine` line

`start` (the default) runs each Procfile line once, except `engine`: one per shard of
ENGINE_SHARDS (honcho names them engine.1 .. engine.N; `engine` maps engine.i to the i-th
shard).

A process that exits while the topology is not stopping is started again, alone, the
others serving on: an engine ends itself by design (its watchdog ends a hung leading
loop; an error its loop does not survive ends it too), and meanwhile the web answers
orders 503 service_unavailable with Retry-After, as during any failover. honcho's own
rule, one process ending stops all the others, took the web, the workers and beat down
with it. The restart waits RESTART_FIRST_DELAY_SECONDS (1 s), doubled at each exit that
follows a run shorter than RESTART_STABLE_SECONDS (60 s), up to SERVE_RESTART_MAX_DELAY
(30 s): a process that cannot start (its database is down) is tried again every 30 s,
not in a tight loop. Each exit and restart is logged (WARNING lines of `config.topology`:
process_name, process_pid, returncode, ran_s, restart_in_s, restarts) and counted
(`platform_process_restarts_total{process}`, alert PlatformProcessRestarting), and the
exited process's live gauges leave /metrics (prometheus_client's `mark_process_dead`: a
dead engine's queue depth is no figure of the present).

SIGTERM or SIGINT stops them in STOP_ORDER: the web first (requests in progress finish,
the engines still answering them), then the engines (each commits its batch), then the
Celery workers (they finish their tasks) and beat; no restart once a stop began; whatever
has not stopped SERVE_STOP_TIMEOUT seconds (60) after the stop began is killed. Exits 0
when it was asked to stop and every process running then stopped cleanly, else non-zero
(a process waiting for its restart when the stop came is named in the summary, not
counted: its exit was logged when it happened).

With LOG_FORMAT=json honcho's prefix is left out, so that every line a process writes
stays one JSON object (its `logger` and `pid` say where it comes from), and the
supervisor's own lines (started, stopped, restarting, the summary) are JSON objects of
logger `config.topology` too."""

from __future__ import annotations

import datetime
import logging
import logging.config
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from honcho import environ
from honcho import manager as honcho_manager
from honcho.manager import Manager
from honcho.printer import Printer

from core.logging import logging_config
from core.metrics import PROCESS_RESTARTS, process_dead
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
# A process that exits unasked is started again after a delay that doubles with each exit
# following a short run (a crash loop, a database still down), up to SERVE_RESTART_MAX_DELAY.
RESTART_FIRST_DELAY_SECONDS = 1.0
RESTART_MAX_DELAY_SECONDS = 30.0
RESTART_STABLE_SECONDS = 60.0  # a run at least this long starts the delays over
LOGGER = "config.topology"
# `make run`'s log files (TOPOLOGY_LOG_DIR, its processes' `>>` redirections in
# Procfile.local): one past LOG_FILE_MAX_BYTES is rotated, looked at this often.
LOG_FILES_CHECK_SECONDS = 10.0
LOG_FILE_MAX_BYTES = 50 * 2**20


def log_files_rotate(directory: Path, *, max_bytes: int) -> list[Path]:
    """Each `*.log` of `directory` larger than `max_bytes` is copied to `NAME.log.1` (the
    previous copy replaced) and emptied in place: its writers opened it to append (the
    shell's `>>`), so each goes on writing at its new end, and the directory holds at most
    twice `max_bytes` a process. A line written between the copy and the emptying is lost.
    The files rotated. They grew for as long as `make run` ran: 3.6 MB a day idle (the
    worker's and beat's periodic tasks), plus a line per order event in the engine's."""
    rotated = []
    for path in sorted(directory.glob("*.log")):
        try:
            if path.stat().st_size <= max_bytes:
                continue
            shutil.copyfile(path, path.with_name(path.name + ".1"))
            os.truncate(path, 0)
        except OSError:  # removed meanwhile, or unreadable: the next check tries again
            continue
        rotated.append(path)
    return rotated


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


def process_kind(name: str) -> str:
    """The Procfile line of honcho's process `name`: `engine` for `engine.2`."""
    return name.rpartition(".")[0] or name


def stop_stage(name: str) -> int:
    """When the process `name` (honcho's `web.1`) is sent SIGTERM: its place in STOP_ORDER."""
    kind = process_kind(name)
    return STOP_ORDER.index(kind) if kind in STOP_ORDER else len(STOP_ORDER)


def restart_delay(quick_exits: int, *, maximum: float) -> float:
    """Seconds before the restart that follows `quick_exits` exits in a row, each after a run
    shorter than RESTART_STABLE_SECONDS: 1, 2, 4 ... up to `maximum`."""
    return float(min(RESTART_FIRST_DELAY_SECONDS * 2 ** max(quick_exits - 1, 0), maximum))


def exit_said(returncode: int) -> str:
    """`status 1`, or `killed by SIGKILL` for a negative status (subprocess's way)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"status {returncode}"


class StagedManager(Manager):
    """honcho's Manager as a supervisor: a process that exits while no stop was asked for is
    started again alone (after its delay, restart_delay), the others running on; a stop
    goes through STOP_ORDER: SIGTERM to the web, then to the engines once every web process
    exited, then to the rest. honcho 2.0 stops every process when one exits, sends SIGTERM
    to all at once and has no hook for either, so its loop is written here; whatever is
    left SERVE_STOP_TIMEOUT after the stop began is killed.

    Each process's state (honcho's dict, by name) holds `obj` (its honcho Process),
    `process` (the multiprocessing.Process that runs it), `pid` once it started,
    `returncode` once it exited, and here `running` (spawned, its exit not yet seen),
    `started_at`, `quick_exits`, `restart_at` (monotonic time of the restart to come),
    `restarts` and `waiting_at_stop`."""

    _terminating: bool  # honcho's flag: a stop has begun
    _processes: dict[str, dict[str, Any]]

    def __init__(self, printer: Printer, *, json_lines: bool = False, restart_max_delay: float = 0.0) -> None:
        super().__init__(printer)
        self.json_lines = json_lines
        self.restart_max_delay = restart_max_delay or RESTART_MAX_DELAY_SECONDS
        self.logger = logging.getLogger(LOGGER)
        self.pids_file = os.environ.get("TOPOLOGY_PIDS_FILE", "")
        log_dir = os.environ.get("TOPOLOGY_LOG_DIR", "")
        self.log_dir = Path(log_dir) if log_dir else None
        self.log_max_bytes = int(os.environ.get("LOG_FILE_MAX_BYTES") or LOG_FILE_MAX_BYTES)
        self._logs_checked = 0.0

    def _logs_keep(self) -> None:
        """Rotates the log files past their size, at most every LOG_FILES_CHECK_SECONDS."""
        now = time.monotonic()
        if self.log_dir is None or now - self._logs_checked < LOG_FILES_CHECK_SECONDS:
            return
        self._logs_checked = now
        for path in log_files_rotate(self.log_dir, max_bytes=self.log_max_bytes):
            self.say(f"{path.name} rotated to {path.name}.1", event="log_rotated", path=str(path))

    # --- what it says -------------------------------------------------------------------
    def say(self, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
        """One line of the supervisor: a JSON object with LOG_FORMAT=json (`fields` as its
        keys), else honcho's `system | message` line."""
        if self.json_lines:
            self.logger.log(level, message, extra=fields)
        else:
            self._system_print(message + "\n")

    # --- starting -------------------------------------------------------------------------
    def _start(self) -> None:
        for name in self._processes:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        state = self._processes[name]
        if "pid" in state:
            self._procmgr.kill(state["pid"])  # the rest of its last group, if SIGTERM left any
        for key in ("pid", "returncode", "sent_stop", "restart_at"):
            state.pop(key, None)
        process = multiprocessing.Process(name=name, target=state["obj"].run, args=(self.events, True))
        process.start()
        state.update(process=process, running=True, started_at=time.monotonic())

    def _restart_due(self) -> None:
        now = time.monotonic()
        for name, state in self._processes.items():
            if "restart_at" in state and state["restart_at"] <= now:
                state["restarts"] = state.get("restarts", 0) + 1
                PROCESS_RESTARTS.labels(process=process_kind(name)).inc()
                self.say(
                    f"restarting {name} (restart {state['restarts']})",
                    level=logging.WARNING,
                    process_name=name,
                    event="restarting",
                    restarts=state["restarts"],
                )
                self._spawn(name)

    # --- the events of the processes --------------------------------------------------------
    def _started(self, name: str, pid: int) -> None:
        self._processes[name]["pid"] = pid
        if self.pids_file:  # scripts/run: the next run stops what a run killed outright left
            with open(self.pids_file, "a") as pids:
                pids.write(f"{pid}\n")
        self.say(f"{name} started (pid={pid})", process_name=name, event="started", process_pid=pid)

    def _exited(self, name: str, returncode: int) -> None:
        state = self._processes[name]
        state["returncode"] = returncode
        state["running"] = False
        pid = state.get("pid")
        if pid is not None:
            process_dead(pid)  # its live gauges (an engine's queue depth) leave /metrics
            if not self._terminating:
                # What it leaves behind in its process group (honcho gives each its own):
                # uvicorn's or gunicorn's workers of a master that was killed kept serving
                # on its socket, and the restarted master could not bind it (exit 3, again).
                self._procmgr.terminate(pid)
        ran = time.monotonic() - state["started_at"]
        fields: dict[str, Any] = {
            "process_name": name,
            "event": "stopped",
            "process_pid": pid,
            "returncode": returncode,
        }
        if self._terminating:
            self.say(f"{name} stopped (rc={returncode})", **fields)
            return
        quick = 0 if ran >= RESTART_STABLE_SECONDS else state.get("quick_exits", 0)
        state["quick_exits"] = quick + 1
        delay = restart_delay(state["quick_exits"], maximum=self.restart_max_delay)
        state["restart_at"] = time.monotonic() + delay
        self.say(f"{name} stopped (rc={returncode})", **fields)
        self.say(
            f"{name} exited unasked ({exit_said(returncode)}) after {ran:.1f} s; the others serve on, "
            f"restarting it in {delay:g} s",
            level=logging.WARNING,
            process_name=name,
            event="exited",
            process_pid=pid,
            returncode=returncode,
            ran_s=round(ran, 1),
            restart_in_s=delay,
            restarts=state.get("restarts", 0),
        )

    def loop(self) -> None:
        def _terminate(signum: int, frame: Any) -> None:
            self.say(f"{honcho_manager.SIGNALS[signum]['name']} received", event="signal")
            self.returncode = honcho_manager.SIGNALS[signum]["rc"]
            self.terminate()

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        self._start()
        stop_began: datetime.datetime | None = None
        while True:
            try:
                msg = self.events.get(timeout=0.1)
            except queue.Empty:
                msg = None
                multiprocessing.active_children()  # reaps the runners of exited processes
                if self._terminating and not any(state.get("running") for state in self._processes.values()):
                    break  # every process has stopped and every line was written
            if msg is not None:
                if msg.type == "line":
                    self._printer.write(msg)
                elif msg.type == "start":
                    self._started(msg.name, msg.data["pid"])
                elif msg.type == "stop":
                    self._exited(msg.name, msg.data["returncode"])
            if self._terminating:
                stop_began = stop_began or self._clock.now()
                self._stop_next()
                if self._clock.now() - stop_began > datetime.timedelta(seconds=honcho_manager.KILL_WAIT):
                    self.kill()
            else:
                self._restart_due()
                self._logs_keep()

    def terminate(self) -> None:
        if not self._terminating:
            self._terminating = True
            for state in self._processes.values():
                if state.pop("restart_at", None) is not None:
                    state["waiting_at_stop"] = True  # it exited before the stop: no restart now
            self._stop_next()

    def _killall(self, force: bool = False) -> None:
        """honcho's, for the processes still running only (one waiting for its restart has no
        process to signal)."""
        for name, state in self._processes.items():
            if state.get("running") and "pid" in state and "returncode" not in state:
                signame = "SIGKILL" if force else "SIGTERM"
                self.say(f"sending {signame} to {name} (pid {state['pid']})", process_name=name, event="signal")
                if force:
                    self._procmgr.kill(state["pid"])
                else:
                    self._procmgr.terminate(state["pid"])

    def _stop_next(self) -> None:
        """SIGTERM to the processes of the first stage that still runs, once each."""
        running = [name for name, state in self._processes.items() if state.get("running") and "pid" in state]
        if not running:
            return
        stage = min(stop_stage(name) for name in running)
        for name in running:
            state = self._processes[name]
            if stop_stage(name) == stage and not state.get("sent_stop"):
                state["sent_stop"] = True
                self.say(f"sending SIGTERM to {name} (pid {state['pid']})", process_name=name, event="signal")
                self._procmgr.terminate(state["pid"])

    def summary(self) -> tuple[bool, str]:
        """Whether the stop was clean (asked for, and every process that ran when it came
        exited 0) and one line naming each process's last status."""
        states = self._processes
        stopped = {name: state.get("returncode") for name, state in states.items() if not state.get("waiting_at_stop")}
        clean = self.returncode in STOP_SIGNAL_CODES and all(code == 0 for code in stopped.values())
        summary = " ".join(
            f"{name}={state.get('returncode')}" + (" (exited before the stop)" if state.get("waiting_at_stop") else "")
            for name, state in states.items()
        )
        return clean, summary


def logging_configure(json_lines: bool) -> None:
    """The supervisor's own lines as every process logs (core.logging), on standard output
    with the processes' lines; at INFO whatever LOG_LEVEL (its lines are few)."""
    config = logging_config(
        log_format="json" if json_lines else "text",
        level=os.environ.get("LOG_LEVEL") or "INFO",
        loggers={LOGGER: {"level": "INFO"}},
    )
    config["handlers"]["console"]["stream"] = "ext://sys.stdout"
    logging.config.dictConfig(config)


def start(*, procfile: Path = PROCFILE) -> int:
    honcho_manager.KILL_WAIT = int(os.environ.get("SERVE_STOP_TIMEOUT") or 60)
    json_lines = os.environ.get("LOG_FORMAT") == "json"
    logging_configure(json_lines)
    manager = StagedManager(
        Printer(sys.stdout, colour=False, prefix=not json_lines),
        json_lines=json_lines,
        restart_max_delay=float(os.environ.get("SERVE_RESTART_MAX_DELAY") or 0),
    )
    concurrency = {"engine": len(engine_shard_names())}
    port = int(os.environ.get("PORT") or 8000)
    for process in environ.expand_processes(procfile_processes(procfile), concurrency=concurrency, env={}, port=port):
        process_env = os.environ.copy()
        process_env.update(process.env)
        manager.add_process(process.name, process.cmd, quiet=process.quiet, env=process_env, cwd=str(ROOT))
        PROCESS_RESTARTS.labels(process=process_kind(process.name))  # at 0 from the start, for increase()
    manager.loop()
    clean, summary = manager.summary()
    manager.say(
        f"topology stopped {'cleanly' if clean else 'with errors'}: {summary}",
        level=logging.INFO if clean else logging.ERROR,
        event="summary",
    )
    if clean:
        return 0
    return manager.returncode or 1


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    if command == "engine":
        engine_exec()
    if command == "start":
        return start(procfile=Path(argv[2]) if len(argv) > 2 else PROCFILE)
    print(f"usage: python -m config.topology [start [PROCFILE]|engine], not {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    raise SystemExit(main(sys.argv))
