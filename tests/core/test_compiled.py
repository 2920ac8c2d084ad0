"""core/compiled.py: compiled modules run only when compiled from the sources there now."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from core import compiled
from core.compiled import COMPILED_MODULES, STAMP_NAME, build_problems, compiled_problems, extensions_present

MODULES = ("pkg/fast.py", "pkg/sub/faster.py")
TAG = ".cpython-311-x86_64-linux-gnu.so"


def tree(root: Path, *, compiled_modules: tuple[str, ...] = (), stamped: bool = True) -> None:
    """Sources for MODULES; an extension beside each of `compiled_modules`; the stamp of
    the sources as they are."""
    for module in MODULES:
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text(f"# {module}\n")
    for module in compiled_modules:
        (root / module).with_suffix(TAG).write_bytes(b"\x7fELF")
    if stamped:
        (root / STAMP_NAME).parent.mkdir(exist_ok=True)
        digests = compiled.source_digests(root=root, modules=MODULES)
        (root / STAMP_NAME).write_text(json.dumps({"sources": digests}))


def test_sources_without_any_extension_run_as_plain_python(tmp_path: Path) -> None:
    tree(tmp_path, stamped=False)
    assert extensions_present(root=tmp_path, modules=MODULES) == {}
    assert compiled_problems(root=tmp_path, modules=MODULES) == []


def test_extensions_compiled_from_the_sources_there_are_fit(tmp_path: Path) -> None:
    tree(tmp_path, compiled_modules=MODULES)
    assert set(extensions_present(root=tmp_path, modules=MODULES)) == set(MODULES)
    assert compiled_problems(root=tmp_path, modules=MODULES) == []


def test_a_source_edited_after_its_compilation_is_refused(tmp_path: Path) -> None:
    tree(tmp_path, compiled_modules=MODULES)
    (tmp_path / "pkg/sub/faster.py").write_text("# edited\n")
    assert compiled_problems(root=tmp_path, modules=MODULES) == ["pkg/sub/faster.py changed since it was compiled"]


def test_extensions_without_a_stamp_are_refused(tmp_path: Path) -> None:
    tree(tmp_path, compiled_modules=MODULES, stamped=False)
    assert compiled_problems(root=tmp_path, modules=MODULES) == [
        "pkg/fast.py changed since it was compiled",
        "pkg/sub/faster.py changed since it was compiled",
    ]


def test_a_module_left_uncompiled_or_compiled_unlisted_is_refused(tmp_path: Path) -> None:
    tree(tmp_path, compiled_modules=("pkg/fast.py",))
    (tmp_path / "pkg/old.abi3.so").write_bytes(b"\x7fELF")
    assert sorted(compiled_problems(root=tmp_path, modules=MODULES)) == [
        "pkg/old.py is compiled but not one of COMPILED_MODULES",
        "pkg/sub/faster.py is not compiled while others are",
    ]


def test_the_check_raises_with_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path, compiled_modules=MODULES)
    (tmp_path / "pkg/fast.py").write_text("# edited\n")
    monkeypatch.setattr(compiled, "ROOT", tmp_path)
    monkeypatch.setattr(compiled, "COMPILED_MODULES", MODULES)
    monkeypatch.setattr(compiled, "_checked", False)
    with pytest.raises(compiled.CompiledModulesStale, match=r"pkg/fast.py changed .* scripts/compile"):
        compiled.compiled_sources_check()


def test_a_build_is_complete_only_when_every_module_is_compiled_and_current(tmp_path: Path) -> None:
    tree(tmp_path)
    assert build_problems(root=tmp_path, modules=MODULES) == ["no module is compiled"]
    tree(tmp_path, compiled_modules=("pkg/fast.py",))
    assert build_problems(root=tmp_path, modules=MODULES) == ["pkg/sub/faster.py is not compiled while others are"]
    tree(tmp_path, compiled_modules=MODULES)
    assert build_problems(root=tmp_path, modules=MODULES) == []


def test_compiled_modules_are_the_ones_python_imports() -> None:
    """The premise of the check: an extension beside a source is what `import` loads, and
    without one the source itself (plain Python: scripts/compile.py --clean)."""
    built = bool(extensions_present())
    for module in COMPILED_MODULES:
        name = module.removesuffix(".py").replace("/", ".")
        loaded = importlib.import_module(name)
        assert loaded.__file__ is not None, name
        assert loaded.__file__.endswith(".so" if built else ".py"), (name, loaded.__file__)
    assert compiled.compiled_in_use() is built
