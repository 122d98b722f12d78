"""The registry library: scaffolding, contributor addresses, strategy ids and retirement."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak, to_checksum_address

from agent.chain.backends import EmbeddedBackend
from agent.chain.deploy import deploy_all
from agent.config import Settings
from agent.errors import PluginError, UsageError
from agent.plugins.discovery import discover
from agent.plugins.registry import (
    check_contributor,
    new,
    read_registrations,
    registered_strategies,
    retire,
    strategy_id,
    validate_strategy,
)
from agent.store import Store

CONTRIBUTOR = to_checksum_address("0x" + "ab" * 20)
RETIRED = 2


def settings_for(root: Path) -> Settings:
    return Settings.model_validate(
        {
            "data": {"dir": str(root / "data")},
            "strategies": {
                "plugin_dir": str(root / "plugins"),
                "memory_mb": 768,
                "reference_bars": 1_000,
            },
        }
    )


def test_new_scaffolds_a_plugin_that_validates_and_a_test_that_passes(tmp_path: Path) -> None:
    scaffold = new("buying-pressure", tmp_path / "work")
    assert scaffold.strategy_path == tmp_path / "work" / "buying_pressure.py"
    assert scaffold.test_path == tmp_path / "work" / "test_buying_pressure.py"
    source = scaffold.strategy_path.read_text()
    assert 'name = "buying-pressure"' in source
    assert "class BuyingPressure(Strategy):" in source

    report = validate_strategy(settings_for(tmp_path), scaffold.strategy_path)
    assert report.passed, [f"{c.name}: {c.message}" for c in report.failures]
    originality = report.checks[-1]  # compared with the shipped strategies: about half explained
    assert originality.name == "originality" and originality.message.startswith("highest R² 0.")
    assert 0.3 < float(originality.message.removeprefix("highest R² ").split(",")[0]) < 0.7

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", scaffold.test_path.name],
        cwd=scaffold.test_path.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


def test_new_refuses_bad_names_shadowing_names_and_existing_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="strategy name 'Bad Name'"):
        new("Bad Name", tmp_path)
    with pytest.raises(UsageError, match="would shadow the module"):
        new("numpy", tmp_path)
    new("my-trend", tmp_path)
    with pytest.raises(UsageError, match=r"refusing to overwrite .*my_trend\.py"):
        new("my-trend", tmp_path)


def test_contributor_addresses_are_checked_and_checksummed() -> None:
    assert check_contributor(CONTRIBUTOR.lower()) == CONTRIBUTOR
    assert check_contributor(CONTRIBUTOR) == CONTRIBUTOR
    with pytest.raises(UsageError, match="checksum is wrong"):
        check_contributor("0x" + CONTRIBUTOR[2:].swapcase())
    for bad in ("0x12", "ab" * 20, "0x" + "g" * 40):
        with pytest.raises(UsageError, match="is not an address"):
            check_contributor(bad)
    with pytest.raises(UsageError, match="zero address"):
        check_contributor("0x" + "0" * 40)


def test_the_strategy_id_is_keccak256_of_the_name() -> None:
    assert strategy_id("ma-crossover") == bytes(keccak(text="ma-crossover"))


PLUGIN = """
import numpy as np
from agent.plugins import Strategy


class Swing(Strategy):
    name = "swing"

    def signal(self, candles):
        return np.tanh(candles["close"].pct_change().fillna(0.0).to_numpy() * 30.0)
"""


@pytest.fixture
def registered_swing(tmp_path: Path) -> Iterator[tuple[Settings, EmbeddedBackend, Store, Path]]:
    """`swing` registered on a fresh embedded chain and installed in the plugin directory."""
    settings = settings_for(tmp_path)
    plugin = tmp_path / "plugins" / "swing.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    code_hash = hashlib.sha256(plugin.read_bytes()).digest()
    with EmbeddedBackend() as backend, Store(settings.data.database_path) as store:
        registry = deploy_all(backend, store, settings).contract(backend.w3, "strategy_registry")
        backend.transact(registry.functions.register(strategy_id("swing"), CONTRIBUTOR, code_hash))
        yield settings, backend, store, plugin


def test_retire_retires_on_chain_moves_the_file_out_and_records_it(
    registered_swing: tuple[Settings, EmbeddedBackend, Store, Path],
) -> None:
    settings, backend, store, plugin = registered_swing
    source = plugin.read_bytes()
    result = retire(settings, "swing", backend=backend, store=store)

    (entry,) = registered_strategies(settings, backend=backend, store=store, names=["swing"])
    assert (entry.name, entry.status, entry.version, entry.payout) == (
        "swing",
        "retired",
        1,
        CONTRIBUTOR,
    )
    registry = deploy_all(backend, store, settings).contract(backend.w3, "strategy_registry")
    assert registry.functions.statusOf(strategy_id("swing")).call() == RETIRED
    assert result.moved_from == plugin.resolve() and not plugin.exists()
    assert result.moved_to is not None and result.moved_to.read_bytes() == source
    assert result.moved_to.parent == Path(settings.data.dir) / "retired-strategies"
    assert [d.name for d in discover(settings, shipped=False, packages=False)] == []
    (row,) = read_registrations(store, name="swing")
    assert (row["status"], row["tx_hash"], row["version"]) == ("retired", result.tx_hash, 1)

    with pytest.raises(PluginError, match="'swing' is already retired"):
        retire(settings, "swing", backend=backend, store=store)


def test_retiring_an_unregistered_strategy_is_refused(
    registered_swing: tuple[Settings, EmbeddedBackend, Store, Path],
) -> None:
    settings, backend, store, _ = registered_swing
    with pytest.raises(PluginError, match="'nobody' is not registered on embedded:"):
        retire(settings, "nobody", backend=backend, store=store)
