"""The engine is pure (docs/matching.md, orders/engine/__init__.py): importing every one of
its modules loads nothing of Django. It did load about 200 Django modules, forms, templates
and the database among them, through the error classes it raises (core.errors imported
django.views.debug for the error reports' settings filter, now core.error_reports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ENGINE = ROOT / "orders" / "engine"


def test_importing_the_engine_loads_no_django_module() -> None:
    modules = sorted(f"orders.engine.{path.stem}" for path in ENGINE.glob("*.py") if path.stem != "__init__")
    script = (
        f"import importlib, json, sys; [importlib.import_module(name) for name in {modules!r}]; "
        "print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] == 'django')))"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert len(modules) > 10
    assert json.loads(done.stdout.splitlines()[-1]) == []
