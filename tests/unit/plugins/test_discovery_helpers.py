"""Discovery helpers: duplicate marking, plugin file selection, code hashes."""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path

import pytest

from agent.plugins.discovery import (
    DiscoveredStrategy,
    StrategyStatus,
    class_sha256,
    discover_shipped,
    mark_duplicates,
    package_sha256,
    plugin_files,
)
from strategies import SHIPPED, MACrossover


def item(name: str, origin: str, status: StrategyStatus = StrategyStatus.OK) -> DiscoveredStrategy:
    return DiscoveredStrategy(name, origin, status, None, None, None, False)


def test_the_first_strategy_with_a_name_wins_and_later_ones_are_duplicates() -> None:
    found = mark_duplicates(
        [
            item("trend", "shipped"),
            item("broken", "file:/p/a.py", StrategyStatus.LOAD_FAILED),
            item("trend", "package:copycat"),
            item("broken", "file:/p/b.py"),
            item("trend", "file:/p/c.py"),
        ]
    )
    assert [(d.name, str(d.status)) for d in found] == [
        ("trend", "OK"),
        ("broken", "LOAD FAILED"),
        ("trend", "DUPLICATE"),
        ("broken", "OK"),  # a failed load claims no name
        ("trend", "DUPLICATE"),
    ]
    assert found[2].error == "the name 'trend' is already taken by shipped"


def test_plugin_files_are_python_files_not_helpers_or_tests(tmp_path: Path) -> None:
    for name in ("b.py", "a.py", "_helper.py", "test_a.py", "notes.md"):
        (tmp_path / name).write_text("")
    (tmp_path / "pkg.py").mkdir()
    assert [p.name for p in plugin_files(tmp_path)] == ["a.py", "b.py"]
    assert plugin_files(tmp_path / "missing") == []


def test_shipped_strategies_are_trusted_and_hashed_by_their_source_file() -> None:
    found = discover_shipped()
    assert [d.name for d in found] == [cls.name for cls in SHIPPED]
    first = found[0]
    source = Path(inspect.getsourcefile(MACrossover) or "")
    assert first.code_hash == hashlib.sha256(source.read_bytes()).hexdigest()
    assert first.trusted and first.strategy_class is MACrossover and first.origin == "shipped"
    assert class_sha256(MACrossover) == first.code_hash


def test_a_package_hash_covers_every_file_of_the_package_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "agora_hash_probe"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "core.py").write_text("X = 1\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"ignored")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = package_sha256("agora_hash_probe.core")
    assert before is not None and "agora_hash_probe" not in sys.modules
    (package / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"still ignored")
    assert package_sha256("agora_hash_probe.core") == before
    (package / "core.py").write_text("X = 2\n")
    assert package_sha256("agora_hash_probe") != before
    assert package_sha256("agora_no_such_package") is None
