"""The production topology: every process of the Procfile, under honcho.

    python -m config.topology          # what scripts/serve execs after its checks
    python -m config.topology engine   # one engine: the Procfile's `engine` line

`start` (the default) runs each Procfile line once, except `engine`: one per shard of
ENGINE_SHARDS (honcho names them engine.1 .. engine.N; `engine` maps engine.i to the i-th
shard). If any process exits, honcho stops the others: a supervisor (systemd, the
container platform) restarts the whole. SIGTERM or SIGINT is passed to every process
(web requests in progress finish, Celery workers finish their tasks, an engine its
batch); whatever has not stopped after SERVE_STOP_TIMEOUT seconds (60) is killed. Exits
0 when it was asked to stop and every process stopped cleanly, else non-zero.

With LOG_FORMAT=json the process-name prefix is left out, so that every line a process
writes stays one JSON object (its `logger` and `pid` say where it comes from)."""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from pathlib import Path

from honcho import environ
from honcho import manager as honcho_manager
from honcho.manager import Manager
from honcho.printer import Printer

from orders.sequencer.shards import shards  # ENGINE_SHARDS, from the Django settings

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
STOP_SIGNAL_CODES = {130, 143}  # honcho's exit status after SIGINT / SIGTERM


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


def start() -> int:
    honcho_manager.KILL_WAIT = int(os.environ.get("SERVE_STOP_TIMEOUT") or 60)
    json_lines = os.environ.get("LOG_FORMAT") == "json"
    manager = Manager(Printer(sys.stdout, colour=False, prefix=not json_lines))
    concurrency = {"engine": len(engine_shard_names())}
    port = int(os.environ.get("PORT") or 8000)
    for process in environ.expand_processes(procfile_processes(), concurrency=concurrency, env={}, port=port):
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
