"""Submitting a third-party plugin on the embedded chain, with Agora's contracts really deployed.

A plugin file written outside the project is listed, validated, registered in the
StrategyRegistry (read back from the contract), installed, and its signal reaches the agent
through `compute_signals`; a changed version becomes version 2; near-copies are refused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from eth_utils import keccak, to_checksum_address
from web3.contract import Contract

from agent.chain.backends import EmbeddedBackend
from agent.chain.deploy import Deployment, deploy_all
from agent.config import Settings
from agent.errors import PluginError, UsageError
from agent.plugins.discovery import (
    ENTRY_POINT_GROUP,
    StrategyStatus,
    discover,
    discover_entry_point,
    find,
)
from agent.plugins.registry import (
    Submission,
    list_strategies,
    read_registrations,
    registered_strategies,
    submit,
    validate_strategy,
)
from agent.plugins.sandbox import SandboxLimits, run_plugin
from agent.plugins.signals import compute_signals
from agent.store import Store
from tests.integration.plugins.conftest import GOOD_PLUGIN, HOSTILE_DIR, MEMORY_MB

ACTIVE = 1
CONTRIBUTOR = to_checksum_address("0x" + "ab" * 20)
OTHER_CONTRIBUTOR = to_checksum_address("0x" + "cd" * 20)
NAME = "volume-momentum"
PACKAGE_STRATEGY = "strategies.testing.noise:NoiseStrategy"


@dataclass
class Env:
    settings: Settings
    backend: EmbeddedBackend
    store: Store
    deployment: Deployment
    registry: Contract
    outside: Path
    """A folder outside the project and the plugin directory: where contributors write code."""

    @property
    def plugin_dir(self) -> Path:
        return Path(self.settings.strategies.plugin_dir)

    def submit(self, path: Path, contributor: str = CONTRIBUTOR) -> Submission:
        return submit(self.settings, path, contributor, backend=self.backend, store=self.store)

    def write(self, name: str, text: str) -> Path:
        path = self.outside / name
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("submit")
    (root / "plugins").mkdir()
    (root / "outside").mkdir()
    settings = Settings.model_validate(
        {
            "data": {"dir": str(root / "data")},
            "strategies": {
                "plugin_dir": str(root / "plugins"),
                "memory_mb": MEMORY_MB,
                "wall_seconds": 20.0,
                "reference_bars": 1_000,
            },
        }
    )
    with EmbeddedBackend() as backend, Store(settings.data.database_path) as store:
        deployment = deploy_all(backend, store, settings)
        registry = deployment.contract(backend.w3, "strategy_registry")
        yield Env(settings, backend, store, deployment, registry, root / "outside")


@pytest.fixture(scope="module")
def original(env: Env) -> Submission:
    """Version 1 of `volume-momentum`, dropped into the plugin directory and submitted."""
    path = env.plugin_dir / "volume_momentum.py"
    path.write_text(GOOD_PLUGIN)
    return env.submit(path)


def test_a_plugin_from_outside_is_listed_validated_submitted_and_its_signal_used(
    env: Env, original: Submission, candles: pd.DataFrame
) -> None:
    path = env.plugin_dir / "volume_momentum.py"
    code_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (original.name, original.version, original.code_hash) == (NAME, 1, code_hash)
    assert original.installed_path == path.resolve()
    assert original.report is not None and original.report.passed

    # registered on-chain with its code hash and the contributor's payout address
    sid = keccak(text=NAME)
    payout, chain_hash, version, status = env.registry.functions.get(sid).call()
    assert (payout, bytes(chain_hash).hex(), version, status) == (
        CONTRIBUTOR,
        code_hash,
        1,
        ACTIVE,
    )
    assert env.registry.functions.strategyOfCodeHash(bytes.fromhex(code_hash)).call() == sid
    (row,) = [r for r in read_registrations(env.store, name=NAME) if r["version"] == 1]
    assert (row["status"], row["chain_key"], row["tx_hash"]) == (
        "installed",
        env.deployment.chain_key,
        original.tx_hash,
    )

    # listed with its origin, code hash and on-chain version
    listed = {
        i.name: i for i in list_strategies(env.settings, backend=env.backend, store=env.store)
    }
    item = listed[NAME]
    assert (item.status, item.origin, item.code_hash) == (
        StrategyStatus.OK,
        f"file:{path.resolve()}",
        code_hash,
    )
    assert item.registered is not None and item.registered.version >= 1
    assert listed["ma-crossover"].registered is None
    on_chain = {
        r.name: r for r in registered_strategies(env.settings, backend=env.backend, store=env.store)
    }
    assert on_chain[NAME].payout == CONTRIBUTOR

    # validated again by name, against the registered set
    assert validate_strategy(env.settings, NAME, backend=env.backend, store=env.store).passed

    # the agent gets its signal through the one signal API, identical to a sandbox run
    plugin = find(discover(env.settings), NAME)
    limits = SandboxLimits.from_settings(env.settings.strategies)
    matrix = compute_signals([plugin], candles, key=None, limits=limits)
    values, mask = matrix.column(NAME)
    assert matrix.reasons == {}
    warmup = plugin.info.warmup_bars if plugin.info else 0
    assert mask[warmup:].all() and not mask[:warmup].any()
    assert plugin.location is not None
    (direct,) = run_plugin(
        plugin.location,
        [candles],
        name=NAME,
        warmup_bars=warmup,
        limits=limits,
        expected_sha256=plugin.code_hash,
    )
    assert direct.ok and direct.values is not None
    np.testing.assert_array_equal(values[mask], direct.values[mask])


def test_a_strategy_from_an_installed_package_is_registered_with_its_package_hash(
    env: Env,
) -> None:
    # An `agora.strategies` entry point as a pip-installed package declares it, to a module the
    # sandbox can import (from the repository root, so nothing is installed into the test
    # environment). The really pip-installed tests/data/thirdparty_pkg (its close-location) is
    # registered the same way in test_discovery.py.
    entry_point = importlib.metadata.EntryPoint(
        name="noise", value=PACKAGE_STRATEGY, group=ENTRY_POINT_GROUP
    )
    (item,) = discover_entry_point(entry_point)
    assert item.ok and item.origin.startswith("package:") and item.code_hash
    result = submit(env.settings, item, CONTRIBUTOR, backend=env.backend, store=env.store)
    assert (result.version, result.code_hash, result.installed_path) == (1, item.code_hash, None)
    assert env.registry.functions.get(keccak(text="noise")).call() == [
        CONTRIBUTOR,
        bytes.fromhex(item.code_hash),
        1,
        ACTIVE,
    ]
    assert not list(env.plugin_dir.glob("*noise*"))  # pip installed it: nothing is copied
    with pytest.raises(PluginError, match="already registered as version 1 with this code"):
        submit(env.settings, item, CONTRIBUTOR, backend=env.backend, store=env.store)


def test_a_changed_version_is_registered_as_version_2_with_its_history_kept(
    env: Env, original: Submission
) -> None:
    with pytest.raises(PluginError, match="already registered as version 1 with this code"):
        env.submit(original.installed_path)

    changed = env.write("my_momentum.py", GOOD_PLUGIN.replace('"window": 12', '"window": 8'))
    second = env.submit(changed)
    assert second.version == 2
    assert second.installed_path == original.installed_path  # replaces the earlier version
    assert original.installed_path.read_bytes() == changed.read_bytes()

    sid = keccak(text=NAME)
    assert env.registry.functions.versionCount(sid).call() == 2
    history = [env.registry.functions.versionAt(sid, i).call() for i in range(2)]
    assert [(bytes(h).hex(), v) for h, v, _ in history] == [
        (original.code_hash, 1),
        (second.code_hash, 2),
    ]
    assert env.registry.functions.get(sid).call()[:3] == [
        CONTRIBUTOR,
        bytes.fromhex(second.code_hash),
        2,
    ]
    installed = [r["version"] for r in read_registrations(env.store, name=NAME)]
    assert installed == [1, 2]
    (listed,) = [
        i
        for i in list_strategies(env.settings, backend=env.backend, store=env.store)
        if i.name == NAME
    ]
    assert listed.registered is not None and listed.registered.version == 2
    assert listed.code_registered is True


def test_a_copy_of_a_registered_strategy_under_a_new_name_is_refused(
    env: Env, original: Submission
) -> None:
    copy = original.installed_path.read_text().replace(f'"{NAME}"', '"fresh-momentum"')
    path = env.write("fresh_momentum.py", copy)
    with pytest.raises(PluginError) as caught:
        env.submit(path)
    message = str(caught.value)
    assert message.startswith("strategy 'fresh-momentum' was not submitted: 1 validation check")
    assert "originality: its signal is explained by the registered strategies (R² 1.000 " in message
    assert f": {NAME} (1.000 alone)" in message  # the registered one it copies, named first
    assert env.registry.functions.statusOf(keccak(text="fresh-momentum")).call() == 0
    assert not (env.plugin_dir / "fresh_momentum.py").exists()


def test_a_renamed_copy_of_a_shipped_strategy_is_refused_naming_it(env: Env) -> None:
    with pytest.raises(PluginError, match=r"\(R² 1\.000 .*\): ma-crossover \(1\.000 alone\)"):
        env.submit(HOSTILE_DIR / "renamed_ma_crossover.py")
    assert env.registry.functions.statusOf(keccak(text="totally-original-trend")).call() == 0


def test_the_name_of_a_shipped_strategy_cannot_be_taken(env: Env) -> None:
    path = env.write("impostor.py", GOOD_PLUGIN.replace(f'"{NAME}"', '"ma-crossover"'))
    with pytest.raises(PluginError, match="'ma-crossover' is taken by the shipped strategy"):
        env.submit(path)


def test_only_the_contributor_may_submit_a_new_version(env: Env, original: Submission) -> None:
    changed = env.write("hijack.py", GOOD_PLUGIN.replace('"window": 12', '"window": 30'))
    with pytest.raises(
        PluginError, match=f"is registered to {CONTRIBUTOR}, not {OTHER_CONTRIBUTOR}"
    ):
        env.submit(changed, OTHER_CONTRIBUTOR)


def test_submit_refuses_to_overwrite_another_strategys_file(env: Env, original: Submission) -> None:
    other = GOOD_PLUGIN.replace(f'"{NAME}"', '"other-momentum"')
    path = env.write(original.installed_path.name, other)
    with pytest.raises(PluginError, match=f"already holds strategy '{NAME}': rename"):
        env.submit(path)
    assert env.registry.functions.statusOf(keccak(text="other-momentum")).call() == 0


@pytest.mark.parametrize(
    "address",
    [
        "0x123",
        "bb00000000000000000000000000000000000000",
        CONTRIBUTOR.swapcase().replace("0X", "0x"),  # mixed case, bad checksum
        "0x0000000000000000000000000000000000000000",
    ],
)
def test_a_bad_contributor_address_is_a_usage_error_with_exit_code_2(
    env: Env, address: str
) -> None:
    path = env.write("unused.py", GOOD_PLUGIN)
    with pytest.raises(UsageError, match="contributor address") as caught:
        env.submit(path, address)
    assert caught.value.exit_code == 2


def test_list_shows_load_failures_with_the_real_error_and_duplicates(
    env: Env, tmp_path: Path
) -> None:
    (tmp_path / "broken.py").write_text("import agora_missing_module\n")
    (tmp_path / "impostor.py").write_text(GOOD_PLUGIN.replace(f'"{NAME}"', '"ma-crossover"'))
    strategies = env.settings.strategies.model_copy(update={"plugin_dir": tmp_path})
    settings = env.settings.model_copy(update={"strategies": strategies})
    listed = list_strategies(settings, backend=env.backend, store=env.store)
    by_origin = {item.origin: item for item in listed}
    broken = by_origin[f"file:{tmp_path / 'broken.py'}"]
    assert (broken.name, broken.status) == ("broken", StrategyStatus.LOAD_FAILED)
    assert broken.reason is not None and "No module named 'agora_missing_module'" in broken.reason
    impostor = by_origin[f"file:{tmp_path / 'impostor.py'}"]
    assert (impostor.name, impostor.status) == ("ma-crossover", StrategyStatus.DUPLICATE)
    assert impostor.reason == "the name 'ma-crossover' is already taken by shipped"
    assert impostor.registered is None and impostor.as_dict()["status"] == "DUPLICATE"
