"""Copy attacks submitted on the embedded chain (tests/data/copy_plugins/): each is refused by
the originality check, naming 'ma-crossover' and the R², and nothing is registered; the
original control registers.

The reference data set is the default one (3,000 bars, seed 20240101), so the R² figures
match those in docs/contributing-strategies.md; the store holds the configured synthetic market,
so originality is also measured there. The causality settings are small: only originality is
under test here (tests/integration/plugins/test_validation.py covers the rest).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_utils import keccak, to_checksum_address
from web3.contract import Contract

from agent.chain.backends import EmbeddedBackend
from agent.chain.deploy import deploy_all
from agent.config import Settings
from agent.errors import PluginError
from agent.market.synthetic import synth
from agent.plugins.registry import read_registrations, submit, validate_strategy
from agent.store import Store
from tests.integration.plugins.conftest import MEMORY_MB

COPIES = Path(__file__).parents[2] / "data" / "copy_plugins"
CONTRIBUTOR = to_checksum_address("0x" + "ab" * 20)
MARKET = "the stored market synthetic:SYN/USD:1h"


@dataclass
class Env:
    settings: Settings
    backend: EmbeddedBackend
    store: Store
    registry: Contract

    @property
    def plugin_dir(self) -> Path:
        return Path(self.settings.strategies.plugin_dir)


def settings_for(root: Path) -> Settings:
    return Settings.model_validate(
        {
            "data": {"dir": str(root / "data")},
            "market": {"synthetic": {"bars": 1_500}},
            "strategies": {
                "plugin_dir": str(root / "plugins"),
                "memory_mb": MEMORY_MB,
                "causality_cut_points": 2,
                "lookahead_samples": 10,
            },
        }
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("copies")
    (root / "plugins").mkdir()
    settings = settings_for(root)
    market = settings.market
    with EmbeddedBackend() as backend, Store(settings.data.database_path) as store:
        synth(store, market.synthetic, market.symbol, market.timeframe)
        deployment = deploy_all(backend, store, settings)
        registry = deployment.contract(backend.w3, "strategy_registry")
        yield Env(settings, backend, store, registry)


def r2_on(message: str, data_set: str) -> float | None:
    """Return the R² the refusal message gives for `data_set`, None when it gives none."""
    head = message.split("): ", 1)[0]
    found = re.search(rf"([0-9.]+) on {re.escape(data_set)}", head)
    return None if found is None else float(found.group(1))


@pytest.mark.parametrize(
    ("file", "name", "reference_r2", "market_r2"),
    [
        ("exact_copy.py", "fresh-trend", (0.999, 1.0), (0.999, 1.0)),
        ("lag1_copy.py", "late-trend", (0.99, 1.0), (0.99, 1.0)),
        ("lag2_copy.py", "later-trend", (0.99, 1.0), (0.99, 1.0)),
        ("scaled_noisy_copy.py", "gentle-trend", (0.85, 0.92), (0.85, 0.92)),
        ("tweaked_copy.py", "slower-trend", (0.95, 0.99), (0.95, 0.99)),
        ("two_faced_copy.py", "two-faced-trend", None, (0.99, 1.0)),
    ],
)
def test_a_copy_of_ma_crossover_is_refused_naming_it_and_nothing_is_registered(
    env: Env,
    file: str,
    name: str,
    reference_r2: tuple[float, float] | None,
    market_r2: tuple[float, float],
) -> None:
    with pytest.raises(PluginError) as caught:
        submit(env.settings, COPIES / file, CONTRIBUTOR, backend=env.backend, store=env.store)
    message = str(caught.value)
    assert message.startswith(f"strategy {name!r} was not submitted: 1 validation check(s)")
    line = message.splitlines()[1].strip()
    assert line.startswith("originality: its signal is explained by the registered strategies")
    assert line.endswith(": refused as a copy")
    assert "): ma-crossover (" in line, line  # the strategy it copies, named first

    on_reference, on_market = r2_on(line, "the reference data"), r2_on(line, MARKET)
    if reference_r2 is None:
        assert on_reference is None, line  # original-looking on the data it can recognise
    else:
        assert on_reference is not None and reference_r2[0] <= on_reference <= reference_r2[1]
    assert on_market is not None and market_r2[0] <= on_market <= market_r2[1], line

    assert env.registry.functions.statusOf(keccak(text=name)).call() == 0
    assert read_registrations(env.store, name=name) == []
    assert list(env.plugin_dir.iterdir()) == []


def test_the_two_faced_copy_passes_where_the_reference_data_is_all_there_is(
    tmp_path: Path,
) -> None:
    # no stored market: the reference data can be worked out, so the copy hides there
    report = validate_strategy(settings_for(tmp_path), COPIES / "two_faced_copy.py")
    assert report.passed, report.failures
    message = report.check("originality").message
    assert float(message.removeprefix("highest R² ").split(",")[0]) < 0.05, message


def test_an_original_signal_is_registered(env: Env) -> None:
    result = submit(
        env.settings, COPIES / "volume_surge.py", CONTRIBUTOR, backend=env.backend, store=env.store
    )
    assert result.report is not None and result.report.passed
    message = result.report.check("originality").message
    highest = float(message.removeprefix("highest R² ").split(",")[0])
    assert highest < 0.1, message  # no shipped strategy reads volume
    assert env.registry.functions.statusOf(keccak(text="volume-surge")).call() == 1
    assert [r["status"] for r in read_registrations(env.store, name="volume-surge")] == [
        "installed"
    ]
    assert (env.plugin_dir / "volume_surge.py").read_bytes() == (
        COPIES / "volume_surge.py"
    ).read_bytes()
