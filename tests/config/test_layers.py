"""The apps depend one way, config on top (docs: the style guide's layers): core <- accounts
<- orders <- revenue <- flywheel, and none of them imports config, which wires them. An
import anywhere in a module counts, a function's own included: a later app is told things
through an outbox, an event or a registry, and the Celery app is reached as
celery.current_app (config.celery makes it every thread's)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings

LAYERS = ("core", "accounts", "orders", "revenue", "flywheel")


def _imported(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return [name.split(".")[0] for name in names]


@pytest.mark.parametrize("app", LAYERS)
def test_an_app_imports_neither_config_nor_a_later_app(app):
    forbidden = {"config", *LAYERS[LAYERS.index(app) + 1 :]}
    found = [
        f"{path.relative_to(settings.BASE_DIR)}: {name}"
        for path in sorted((Path(settings.BASE_DIR) / app).rglob("*.py"))
        for name in _imported(path)
        if name in forbidden
    ]
    assert found == []
