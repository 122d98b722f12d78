"""Discovery from the three places, with third-party code loaded only in the sandbox.

An installed package (tests/data/thirdparty_pkg, built into a wheel and pip-installed) is
found through its entry point, then validated, registered on the embedded chain and used.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from eth_utils import keccak, to_checksum_address

from agent.chain.backends import EmbeddedBackend
from agent.chain.deploy import deploy_all
from agent.config import Settings
from agent.plugins.discovery import (
    DiscoveredStrategy,
    StrategyStatus,
    discover,
    discover_file,
    find,
    package_sha256,
)
from agent.plugins.registry import (
    read_registrations,
    registered_strategies,
    submit,
    validate_strategy,
)
from agent.plugins.sandbox import SandboxLimits, run_plugin
from agent.plugins.signals import compute_signals
from agent.store import Store
from strategies import SHIPPED
from tests.integration.plugins.conftest import GOOD_PLUGIN, MEMORY_MB, strategies_settings

PACKAGE_SOURCE = Path(__file__).parents[2] / "data" / "thirdparty_pkg"
DIST = "agora-example-plugin"
PACKAGE_MODULE = "agora_example_plugin"
PACKAGE_STRATEGY = "close-location"
PACKAGE_WARMUP = 4
ACTIVE = 1

TWO_STRATEGIES = '''
import numpy as np
from agent.plugins import Strategy


class _Base(Strategy):
    """Abstract helper base: not a strategy of its own."""


class Up(_Base):
    name = "always-up"

    def signal(self, candles):
        return np.full(len(candles), 0.5)


class Down(Strategy):
    name = "always-down"

    def signal(self, candles):
        return np.full(len(candles), -0.5)
'''

COPYCAT_NAME = """
import numpy as np
from agent.plugins import Strategy


class Impostor(Strategy):
    name = "ma-crossover"

    def signal(self, candles):
        return np.zeros(len(candles))
"""

BAD_METADATA = """
import numpy as np
from agent.plugins import Strategy


class BadAddress(Strategy):
    name = "bad-address"
    payout_address = "not-an-address"

    def signal(self, candles):
        return np.zeros(len(candles))
"""

WRITES_ON_IMPORT = """
open({target!r}, "w").write("written at import time")
"""

IMPORT_PROBE = """
import sys
import numpy as np
from agent.plugins import Strategy

HEAVY = ("torch", "sqlite_utils", "web3", "stable_baselines3", "agent.store", "agent.config")


class ImportProbe(Strategy):
    name = "import-probe"

    def signal(self, candles):
        heavy = any(name in sys.modules for name in HEAVY)
        return np.full(len(candles), 1.0 if heavy else -1.0)
"""


def write_plugins(directory: Path, target: Path) -> None:
    files = {
        "a_good.py": GOOD_PLUGIN,
        "b_two.py": TWO_STRATEGIES,
        "c_copycat_name.py": COPYCAT_NAME,
        "d_bad_metadata.py": BAD_METADATA,
        "e_empty.py": "x = 1\n",
        "f_writes_on_import.py": WRITES_ON_IMPORT.format(target=str(target)),
        "_helper.py": "raise SystemExit('helpers are not plugins')\n",
        "test_a_good.py": "raise SystemExit('tests are not plugins')\n",
        "notes.txt": "not python\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text)


def test_plugin_directory_lists_each_strategy_with_status_origin_and_hash(
    tmp_path: Path,
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    target = tmp_path / "import_time_write.txt"
    write_plugins(plugins, target)
    found = discover(strategies_settings(plugins), packages=False)

    shipped = [d for d in found if d.origin == "shipped"]
    assert [d.name for d in shipped] == [cls.name for cls in SHIPPED]
    assert all(d.trusted and d.ok for d in shipped)
    files = [d for d in found if d.origin.startswith("file:")]
    summary = [(d.name, str(d.status), Path(d.origin[5:]).name) for d in files]
    assert summary == [
        ("volume-momentum", "OK", "a_good.py"),
        ("always-down", "OK", "b_two.py"),
        ("always-up", "OK", "b_two.py"),
        ("ma-crossover", "DUPLICATE", "c_copycat_name.py"),
        ("BadAddress", "LOAD FAILED", "d_bad_metadata.py"),
        ("e_empty", "LOAD FAILED", "e_empty.py"),
        ("f_writes_on_import", "LOAD FAILED", "f_writes_on_import.py"),
    ]
    by_file = {Path(d.origin[5:]).name: d for d in files}
    good = by_file["a_good.py"]
    assert good.code_hash == hashlib.sha256((plugins / "a_good.py").read_bytes()).hexdigest()
    assert not good.trusted and good.info is not None
    assert good.info.payout_address == "0x00000000000000000000000000000000000000bb"
    assert good.info.params == {"window": 12}
    assert (
        by_file["c_copycat_name.py"].error == "the name 'ma-crossover' is already taken by shipped"
    )
    assert by_file["d_bad_metadata.py"].error == (
        "strategy 'bad-address': payout_address 'not-an-address' is not an address"
    )
    assert str(by_file["e_empty.py"].error).startswith("defines no Strategy subclass")
    # refused: by the audit hook first, else by the sandbox, where that directory does not exist
    assert str(by_file["f_writes_on_import.py"].error) in (
        f"tried to write {target} outside its directory",
        f"failed to import: FileNotFoundError: [Errno 2] No such file or directory: '{target}'",
    )
    assert not target.exists()
    assert not [m for m in sys.modules if m.startswith("agora_plugin_")], "imported in-process"


def test_a_plugin_file_changed_after_discovery_is_refused(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = tmp_path / "good.py"
    path.write_text(GOOD_PLUGIN)
    (item,) = discover_file(path)
    assert item.location is not None
    path.write_text(GOOD_PLUGIN.replace("np.tanh(", "-np.tanh("))
    (result,) = run_plugin(
        item.location, [candles], name=item.name, warmup_bars=12, expected_sha256=item.code_hash
    )
    assert result.reason is not None
    assert result.reason.startswith(f"its file {path} changed since it was discovered")


def test_the_sandbox_child_imports_nothing_heavy(tmp_path: Path, candles: pd.DataFrame) -> None:
    path = tmp_path / "probe.py"
    path.write_text(IMPORT_PROBE)
    (item,) = discover_file(path)
    matrix = compute_signals([item], candles, key=None)
    values, mask = matrix.column("import-probe")
    assert mask.all() and (values == -1.0).all(), "the child imported torch, the store or config"


def _pip(*args: str | Path) -> None:
    command = [sys.executable, "-m", "pip", *map(str, args)]
    env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Build a wheel of tests/data/thirdparty_pkg offline and pip-install it; uninstall after."""
    source = tmp_path_factory.mktemp("package") / "thirdparty_pkg"
    shutil.copytree(PACKAGE_SOURCE, source)  # build outside the repository (build/, egg-info)
    wheels = tmp_path_factory.mktemp("wheels")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", wheels, source)
    (wheel,) = wheels.glob("*.whl")
    _pip("install", "--no-deps", "--no-index", "-q", wheel)
    try:
        yield
    finally:
        _pip("uninstall", "-y", "-q", DIST)


@pytest.mark.usefixtures("installed_package")
def test_an_installed_package_is_found_through_its_entry_point(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    found = discover(strategies_settings(tmp_path / "no-plugins"))
    (item,) = [d for d in found if d.origin.startswith("package:")]
    assert (item.name, item.origin, item.status) == (
        PACKAGE_STRATEGY,
        f"package:{DIST}",
        StrategyStatus.OK,
    )
    assert not item.trusted and item.location is not None
    assert (item.location.kind, item.location.target, item.location.attr) == (
        "module",
        PACKAGE_MODULE,
        "CloseLocation",
    )
    assert item.code_hash is not None and item.code_hash == package_sha256(PACKAGE_MODULE)
    assert item.info is not None and item.info.author == "An outside contributor"
    assert PACKAGE_MODULE not in sys.modules, "the package was imported in-process"

    matrix = compute_signals([item], candles, key=None)
    assert matrix.reasons == {}
    values, mask = matrix.column(PACKAGE_STRATEGY)
    assert mask[PACKAGE_WARMUP:].all() and not mask[:PACKAGE_WARMUP].any()
    assert abs(values).max() <= 1.0


@pytest.mark.usefixtures("installed_package")
def test_an_installed_package_is_validated_registered_on_chain_and_its_signal_used(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    settings = Settings.model_validate(
        {
            "data": {"dir": str(tmp_path / "data")},
            "strategies": {
                "plugin_dir": str(tmp_path / "plugins"),
                "memory_mb": MEMORY_MB,
                "reference_bars": 1_000,
            },
        }
    )
    item = find(discover(settings), PACKAGE_STRATEGY)
    assert item.origin == f"package:{DIST}" and item.info is not None
    code_hash = package_sha256(PACKAGE_MODULE)
    payout = item.info.payout_address  # the contributor pays out to the address it declares
    assert payout is not None

    with EmbeddedBackend() as backend, Store(settings.data.database_path) as store:
        deployment = deploy_all(backend, store, settings)
        registry = deployment.contract(backend.w3, "strategy_registry")

        # validated against every shipped strategy: the shipped ones explain about half of it
        report = validate_strategy(settings, PACKAGE_STRATEGY, backend=backend, store=store)
        assert report.passed, [f"{c.name}: {c.message}" for c in report.failures]
        originality = re.fullmatch(
            r"highest R² ([0-9.]+), on the reference data, by .* \(limit 0\.8\)",
            report.check("originality").message,
        )
        assert originality is not None, report.check("originality").message
        assert 0.3 < float(originality.group(1)) < 0.7

        # registered on-chain with the package's code hash and its payout address
        result = submit(settings, PACKAGE_STRATEGY, payout, backend=backend, store=store)
        assert (result.version, result.code_hash, result.origin, result.installed_path) == (
            1,
            code_hash,
            f"package:{DIST}",
            None,
        )
        sid = keccak(text=PACKAGE_STRATEGY)
        assert registry.functions.get(sid).call() == [
            to_checksum_address(payout),
            bytes.fromhex(code_hash),
            1,
            ACTIVE,
        ]
        assert registry.functions.strategyOfCodeHash(bytes.fromhex(code_hash)).call() == sid
        (entry,) = registered_strategies(settings, backend=backend, store=store)
        assert (entry.name, entry.payout, entry.code_hash) == (
            PACKAGE_STRATEGY,
            to_checksum_address(payout),
            code_hash,
        )
        (row,) = read_registrations(store, name=PACKAGE_STRATEGY)
        assert (row["status"], row["installed_path"]) == ("installed", f"package:{DIST}")
        assert not list(Path(settings.strategies.plugin_dir).glob("*"))  # pip installed it

    assert PACKAGE_MODULE not in sys.modules, "the package was imported in-process"
    limits = SandboxLimits.from_settings(settings.strategies)
    matrix = compute_signals(
        [find(discover(settings), PACKAGE_STRATEGY)], candles, key=None, limits=limits
    )
    assert matrix.reasons == {}
    values, mask = matrix.column(PACKAGE_STRATEGY)
    assert mask[PACKAGE_WARMUP:].all() and not mask[:PACKAGE_WARMUP].any()
    assert np.isfinite(values[mask]).all() and abs(values).max() <= 1.0


def test_shipped_strategies_come_first_and_win_duplicates() -> None:
    found = discover(strategies_settings(Path("/nonexistent")), packages=False)
    assert [d.name for d in found] == [cls.name for cls in SHIPPED]
    first: DiscoveredStrategy = found[0]
    assert first.strategy_class is SHIPPED[0] and first.code_hash is not None
