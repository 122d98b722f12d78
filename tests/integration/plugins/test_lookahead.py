"""The look-ahead check on the paid paths: training data, backtests and reward epochs.

The cheating plugins (tests/data/lookahead_plugins) each dodge a fixed check: one looks ahead
only on histories longer than 3,000 bars (the reference data's length), one everywhere except
at evenly spaced cut points, one only at every 97th bar (about 1 % of bars). Each is caught at
random bars drawn fresh from the operating system, quarantined, masked and unpaid; an honest
plugin never is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.backtest.runner import run_scenario
from agent.backtest.scenario import Scenario
from agent.config import Settings, StrategiesSettings, SyntheticSettings
from agent.env.features import FEATURE_NAMES
from agent.env.trading_env import EnvConfig
from agent.learn.dataset import load_dataset
from agent.market.schema import SeriesKey
from agent.market.synthetic import generate
from agent.plugins.discovery import DiscoveredStrategy, StrategyStatus, discover, discover_file
from agent.plugins.lookahead import draw_cuts, read_quarantine, run_plugin_incremental
from agent.plugins.market_data import build_market_data
from agent.plugins.registry import list_strategies
from agent.plugins.sandbox import SandboxLimits
from agent.plugins.signals import compute_signals
from agent.rewards.epochs import PayoutAccount, compute_epoch
from agent.store import Store

PLUGINS = Path(__file__).parents[2] / "data" / "lookahead_plugins"
CHEATERS = ("peek-beyond-length", "peek-off-grid", "peek-every-97th")
HONEST = "honest-momentum"
BARS = 3_500
KEY = SeriesKey("synthetic", "SYN/USD", "1h")
SAMPLES = 1_200
"""More than the default 460: the every-97th cheater then escapes with probability about 4e-6
(with 460 it is about 0.009, which is the documented 99 % at a 1 % peek rate)."""


def settings_for(tmp_path: Path, **strategies: Any) -> Settings:
    return Settings.model_validate(
        {
            "data": {"dir": str(tmp_path / "data")},
            "market": {"synthetic": {"seed": 5, "bars": BARS}},
            "strategies": {
                "plugin_dir": str(PLUGINS),
                "lookahead_samples": SAMPLES,
                **strategies,
            },
        }
    )


@pytest.fixture(scope="module")
def plugins() -> dict[str, DiscoveredStrategy]:
    found = discover(StrategiesSettings(plugin_dir=PLUGINS), shipped=False, packages=False)
    assert all(item.ok for item in found), [item.error for item in found]
    return {item.name: item for item in found}


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return generate(SyntheticSettings(seed=5, bars=BARS), "1h").candles


def _stored(settings: Settings, candles: pd.DataFrame) -> Store:
    store = Store(settings.data.database_path)
    store.write_candles(KEY, candles)
    return store


@pytest.mark.parametrize("cheater", CHEATERS)
def test_a_training_data_build_quarantines_a_lookahead_plugin(
    cheater: str, tmp_path: Path, candles: pd.DataFrame
) -> None:
    settings = settings_for(tmp_path)
    with _stored(settings, candles) as store:
        dataset = load_dataset(store, settings, KEY, strategies=[cheater, HONEST, "ma-crossover"])
        reasons = dict(dataset.reasons or {})
        assert set(reasons) == {cheater}
        assert reasons[cheater].startswith("quarantined: looks ahead: its signal at bar ")
        index = dataset.data.strategy_names.index(cheater)
        assert not dataset.data.mask[:, index].any()
        assert not dataset.data.signals[:, index].any()
        (entry,) = read_quarantine(store).values()
        assert (entry.strategy, entry.source, entry.series) == (cheater, "training", str(KEY))
        assert f"bar {entry.first_bar} " in reasons[cheater]

        # from then on it is masked on any data without running, and listed as QUARANTINED
        again = compute_signals(
            [discover_file(PLUGINS / f"{cheater.replace('-', '_')}.py")[0]],
            candles.iloc[:500],
            key=None,
            store=store,
        )
        assert again.reasons[cheater] == entry.reason
        listed = {item.name: item for item in list_strategies(settings, store=store)}
        assert listed[cheater].status is StrategyStatus.QUARANTINED
        assert listed[cheater].first_bad_bar == entry.first_bar
        assert f"first offending bar {entry.first_bar} " in str(listed[cheater].reason)
        assert listed[HONEST].status is StrategyStatus.OK


@pytest.mark.parametrize("cheater", CHEATERS)
def test_a_backtest_quarantines_a_lookahead_plugin(cheater: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    scenario = Scenario.model_validate(
        {
            "name": "lookahead",
            "data": {"source": "synthetic", "synthetic": {"seed": 5, "bars": BARS}},
            "strategies": [cheater, HONEST],
            "baselines": ["buy-and-hold"],
        }
    )
    run = run_scenario(scenario, settings)
    assert cheater not in [r.name for r in run.results]  # no table row for a cheater
    assert HONEST in [r.name for r in run.results]
    warnings = " ".join(str(w) for ws in run.warnings.values() for w in ws)
    assert "quarantined: looks ahead" in warnings


def test_the_reward_share_of_a_quarantined_plugin_is_zero(
    tmp_path: Path, candles: pd.DataFrame, plugins: dict[str, DiscoveredStrategy]
) -> None:
    settings = settings_for(tmp_path)
    items = [plugins[name] for name in (*CHEATERS, HONEST)]
    with _stored(settings, candles) as store:
        data, reasons = build_market_data(
            candles, items, key=KEY, store=store, settings=settings.strategies, source="rewards"
        )
    quarantined = {n for n, r in reasons.items() if r.startswith("quarantined")}
    assert quarantined == set(CHEATERS)
    columns = np.arange(len(items)) + EnvConfig().lookback_bars * len(FEATURE_NAMES)

    def follow_the_signals(observation: np.ndarray) -> int:
        return len(EnvConfig().exposure_levels) - 1 if observation[columns].sum() > 0.0 else 0

    accounts = {
        item.name: PayoutAccount(str(item.info.payout_address), "metadata")
        for item in items
        if item.info
    }
    rewards = settings.rewards.model_copy(update={"epoch_bars": 500, "workers": 1})
    record = compute_epoch(
        2,
        follow_the_signals,
        data,
        rewards,
        accounts,
        accounts[HONEST].address,
        quarantined=quarantined,
    )
    paid = {a.strategy: a.amount for a in record.allocations if a.strategy}
    assert all(paid[name] == 0 for name in CHEATERS)
    contributions = {a.strategy: a.contribution for a in record.allocations if a.strategy}
    assert all(contributions[name] == 0.0 for name in CHEATERS)


def test_an_honest_plugin_is_never_quarantined(
    candles: pd.DataFrame, plugins: dict[str, DiscoveredStrategy]
) -> None:
    settings = StrategiesSettings(plugin_dir=PLUGINS, lookahead_samples=SAMPLES)
    for _ in range(3):
        matrix = compute_signals([plugins[HONEST]], candles, key=None, settings=settings)
        assert matrix.reasons == {}
        _, mask = matrix.column(HONEST)
        assert mask[36:].all() and not mask[:36].any()  # the warm-up is not used


def test_the_sample_is_fresh_every_time_and_skips_the_last_bar() -> None:
    first, second = draw_cuts(BARS, 460, 12), draw_cuts(BARS, 460, 12)
    assert len(first) == len(second) == 460
    assert not np.array_equal(first, second)
    assert first.min() >= 12 and first.max() <= BARS - 2
    assert np.all(np.diff(first) > 0)
    assert len(draw_cuts(50, 460)) == 49


LENGTH_REPORTER = """
import pandas as pd
from agent.plugins import Strategy


class LengthReporter(Strategy):
    name = "length-reporter"
    version = "1.0.0"
    author = "Probe"
    description = "Every value is the number of candles it was given, over a million."

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        return pd.Series(len(candles) / 1e6, index=candles.index)
"""


def test_each_cut_is_answered_by_one_child_from_the_candles_up_to_it_only(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = tmp_path / "length_reporter.py"
    path.write_text(LENGTH_REPORTER)
    (item,) = discover_file(path)
    assert item.ok and item.location is not None, item.error
    cuts = [3, 10, 11, 700, 2_999, 3_400]
    run = run_plugin_incremental(
        item.location, candles, cuts, name=item.name, limits=SandboxLimits()
    )
    assert run.ok, run.reason
    np.testing.assert_array_equal(run.values, (np.array(cuts) + 1) / 1e6)
    # and its full-history signal, which depends on the length, is caught
    matrix = compute_signals([item], candles, key=None)
    assert matrix.reasons[item.name].startswith("quarantined: looks ahead")
