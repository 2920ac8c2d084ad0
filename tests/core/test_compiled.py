"""core/compiled.py: compiled modules run only when compiled from the sources there now."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import compiled
from core.compiled import STAMP_NAME, compiled_problems, extensions_present

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


def test_this_checkout_is_compiled_from_its_sources_or_not_at_all() -> None:
    """Whatever `make install` left here (tests/ never runs stale compiled code)."""
    assert compiled_problems() == []
    assert compiled.compiled_in_use() == bool(extensions_present())
