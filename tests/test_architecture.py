"""The layering in .importlinter holds, and breaking it fails (import-linter on a copy of the tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT

PACKAGES = ("core", "api", "dashboard")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    program = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(program), "--no-cache", "--config", str(root / ".importlinter")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(PROJECT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / ".importlinter", root / ".importlinter")
    return root


def _inject(path: Path, line: str) -> None:
    source = path.read_text(encoding="utf-8")
    marker = "from __future__ import annotations\n"
    assert marker in source
    path.write_text(source.replace(marker, marker + line + "\n", 1), encoding="utf-8")


def test_the_contracts_hold() -> None:
    result = _lint(PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    # a read module taking something from the operations side
    ("core/catalog.py", "from core.ops import loader  # noqa: F401", "never imports the operations side BROKEN"),
    # ... also indirectly, through a module it may import
    ("core/explain.py", "from core.ops.backup import files  # noqa: F401", "never imports the operations side BROKEN"),
    # the package itself re-exporting an operation
    ("core/__init__.py", "from core.ops.loader import ensure_loaded  # noqa: F401",
     "core/__init__.py) never imports the operations side BROKEN"),
    # a shell reaching past the public API into the library's internals
    ("dashboard/lib/data.py", "from core import db  # noqa: F401", "import only core's public API BROKEN"),
    ("api/server.py", "from core.lock import read_lock  # noqa: F401", "import only core's public API BROKEN"),
])
def test_a_broken_layer_fails_the_check(tmp_path: Path, module: str, line: str, contract: str) -> None:
    root = _copy_tree(tmp_path)
    assert _lint(root).returncode == 0  # the copy alone is clean: the injected line is what breaks it
    _inject(root / module, line)
    result = _lint(root)
    assert result.returncode != 0
    assert contract in result.stdout, result.stdout


def test_a_new_core_module_must_be_placed_in_a_layer(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    (root / "core" / "newcomer.py").write_text('"""Unplaced."""\n', encoding="utf-8")
    result = _lint(root)
    assert result.returncode != 0
    assert "core.newcomer" in result.stdout
