"""The layers are a contract, checked by import-linter: the pure core imports no I/O.

`make test` runs `lint-imports` on the tree. These tests show the contract has teeth: a copy of
the package in which one core module imports the store, web3 or the command line must fail it,
naming the module and the import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package and its contract, away from the installed one."""
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(REPO / "agent", root / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_its_contracts(tree: Path) -> None:
    done = _lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "statement", "forbidden"),
    [
        ("agent/dex/amm.py", "import agent.store", "agent.store"),
        ("agent/env/features.py", "import web3", "web3"),
        ("agent/audit/record.py", "from agent.cli import main", "agent.cli"),
        ("agent/rewards/attribution.py", "import sqlite3", "sqlite3"),
    ],
)
def test_a_core_module_importing_io_breaks_the_contract(
    tree: Path, module: str, statement: str, forbidden: str
) -> None:
    path = tree / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{statement}  # noqa\n")
        done = _lint(tree)
    finally:
        path.write_text(original)
    assert done.returncode != 0
    source = module.removesuffix(".py").replace("/", ".")
    assert f"not allowed to import {forbidden}" in done.stdout
    assert source in done.stdout and "BROKEN" in done.stdout
