"""Validating a file loads that file only: the rest of the plugin directory is read by name and
code hash, and only its registered strategies run (for the originality check)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.config import Settings
from agent.plugins.discovery import declared_names
from agent.plugins.registry import validate_strategy
from agent.plugins.validation import ValidationReport
from agent.store import Store
from tests.integration.plugins.conftest import GOOD_PLUGIN

SLOW_AT_IMPORT = """
import time

time.sleep(30)

from agent.plugins import Strategy


class SlowToImport(Strategy):
    name = "slow-to-import"
"""

HOSTILE_AT_IMPORT = """
with open("/tmp/agora-escaped-from-the-plugin-dir.txt", "w") as handle:
    handle.write("pwned")
while True:
    pass
"""

SLOW_BOUND_S = 15.0
"""Well under the 30 s the slow file sleeps: it was not loaded (a behavioural bound)."""


def settings_for(root: Path, plugin_dir: Path) -> Settings:
    return Settings.model_validate(
        {
            "data": {"dir": str(root / "data")},
            "strategies": {
                "plugin_dir": str(plugin_dir),
                "memory_mb": 768,
                "reference_bars": 1_000,
                "lookahead_samples": 40,
            },
        }
    )


def summary(report: ValidationReport) -> list[tuple[str, bool, str]]:
    """The report without the measured speed (a timing, different on every run)."""
    return [(c.name, c.passed, c.message if c.name != "speed" else "") for c in report.checks] + [
        (report.name, report.passed, str(report.code_hash))
    ]


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("work") / "volume_momentum.py"
    path.write_text(GOOD_PLUGIN)
    return path


@pytest.fixture(scope="module")
def clean_report(tmp_path_factory: pytest.TempPathFactory, candidate: Path) -> ValidationReport:
    root = tmp_path_factory.mktemp("clean")
    (root / "plugins").mkdir()
    return validate_strategy(settings_for(root, root / "plugins"), candidate)


def test_a_slow_and_a_hostile_plugin_file_do_not_change_validating_another_file(
    tmp_path: Path, candidate: Path, clean_report: ValidationReport
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_to_import.py").write_text(SLOW_AT_IMPORT)
    (plugins / "hostile_at_import.py").write_text(HOSTILE_AT_IMPORT)

    started = time.monotonic()
    report = validate_strategy(settings_for(tmp_path, plugins), candidate)
    elapsed_s = time.monotonic() - started

    assert elapsed_s < SLOW_BOUND_S, f"validation took {elapsed_s:.1f} s: the slow file ran"
    assert clean_report.passed, [f"{c.name}: {c.message}" for c in clean_report.failures]
    assert summary(report) == summary(clean_report)


def test_a_name_taken_by_a_shipped_strategy_is_refused_without_running_the_checks(
    tmp_path: Path,
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_to_import.py").write_text(SLOW_AT_IMPORT)
    impostor = tmp_path / "impostor.py"
    impostor.write_text(GOOD_PLUGIN.replace('"volume-momentum"', '"ma-crossover"'))

    started = time.monotonic()
    report = validate_strategy(settings_for(tmp_path, plugins), impostor)

    assert time.monotonic() - started < SLOW_BOUND_S
    assert [(c.name, c.passed) for c in report.checks] == [("load", False)]
    assert report.checks[0].message == (
        "the name 'ma-crossover' is taken by the shipped strategy: rename yours"
    )


def test_a_registered_plugin_file_is_still_compared_and_an_unregistered_one_is_not(
    tmp_path: Path, candidate: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_to_import.py").write_text(SLOW_AT_IMPORT)
    registered = plugins / "volume_momentum.py"
    registered.write_text(GOOD_PLUGIN)
    settings = settings_for(tmp_path, plugins)
    copy = tmp_path / "copy.py"
    copy.write_text(GOOD_PLUGIN.replace('"volume-momentum"', '"volume-copy"'))
    with Store(settings.data.database_path) as store:
        store.db.execute(
            "INSERT INTO strategy_registrations (chain_key, name, strategy_id, version, "
            "code_hash, payout, status, created_ms, updated_ms) "
            "VALUES ('test', 'volume-momentum', '0x00', 1, 'ab', '0x00', 'installed', 0, 0)"
        )

    started = time.monotonic()
    report = validate_strategy(settings, copy)

    assert time.monotonic() - started < SLOW_BOUND_S
    originality = report.check("originality")
    assert not originality.passed
    assert "volume-momentum (1.000 alone)" in originality.message


def test_declared_names_are_read_without_running_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hostile_at_import.py"
    path.write_text(HOSTILE_AT_IMPORT + '\nclass A:\n    name: str = "a-name"\n')
    assert declared_names(path) == {"hostile_at_import", "hostile-at-import", "a-name"}
    (tmp_path / "broken.py").write_text("class (:\n")
    assert declared_names(tmp_path / "broken.py") == {"broken"}


def test_evaluating_a_file_does_not_run_the_plugin_directory(
    tmp_path: Path, candidate: Path
) -> None:
    """`agora strategies evaluate FILE` compares it with the shipped and registered strategies
    only: a slow and a hostile file in the plugin directory change neither its time nor its
    figures."""
    from agent.backtest.evaluation import evaluate_strategy

    clean_root = tmp_path / "clean"
    (clean_root / "plugins").mkdir(parents=True)
    clean = evaluate_strategy(settings_for(clean_root, clean_root / "plugins"), str(candidate))
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_to_import.py").write_text(SLOW_AT_IMPORT)
    (plugins / "hostile_at_import.py").write_text(HOSTILE_AT_IMPORT)

    started = time.monotonic()
    crowded = evaluate_strategy(settings_for(tmp_path, plugins), str(candidate))
    elapsed_s = time.monotonic() - started

    assert elapsed_s < SLOW_BOUND_S, f"evaluation took {elapsed_s:.1f} s: the slow file ran"
    assert crowded.diagnostics.as_dict() == clean.diagnostics.as_dict()
    assert crowded.as_dict()["overlap"] == clean.as_dict()["overlap"]
    assert set(dict(clean.overlap.alone)) >= {"ma-crossover", "rsi-reversion"}  # shipped pool
