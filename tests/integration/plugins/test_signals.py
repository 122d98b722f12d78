"""The one signal API against a real SQLite store: isolation, masking, hidden series, caching."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from agent.config import StrategiesSettings, SyntheticSettings
from agent.market.schema import SeriesKey
from agent.market.synthetic import generate
from agent.plugins.discovery import DiscoveredStrategy, discover_file
from agent.plugins.signals import StrategyLike, compute_signals
from agent.store import Store
from strategies import MACrossover
from strategies.testing import PlantedOracle

KEY = SeriesKey("synthetic", "SYN/USD", "1h")

HIDDEN_PROBE = """
import numpy as np
from agent.plugins.interface import HIDDEN_ATTR, Strategy


class {cls}(Strategy):
    name = "{name}"
    hidden_inputs = {declared!r}

    def signal(self, candles):
        hidden = candles.attrs.get(HIDDEN_ATTR) or {{}}
        return np.full(len(candles), 1.0 if "planted" in hidden else -1.0)
"""


def probe(tmp_path: Path, name: str, declared: tuple[str, ...]) -> DiscoveredStrategy:
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(HIDDEN_PROBE.format(cls="Probe", name=name, declared=declared))
    (item,) = discover_file(path)
    assert item.ok, item.error
    return item


def test_hidden_series_reach_only_the_strategies_that_declare_them(tmp_path: Path) -> None:
    market = generate(SyntheticSettings(seed=5, bars=200), "1h")
    strategies: list[StrategyLike] = [
        PlantedOracle,
        probe(tmp_path, "peeks-at-hidden", ()),
        probe(tmp_path, "declares-hidden", ("planted",)),
    ]
    fixtures = StrategiesSettings(fixtures=["planted-oracle", "declares-hidden"])
    matrix = compute_signals(
        strategies, market.candles, key=KEY, hidden={"planted": market.planted}, settings=fixtures
    )
    assert matrix.reasons == {}
    assert (matrix.column("peeks-at-hidden")[0] == -1.0).all()
    assert (matrix.column("declares-hidden")[0] == 1.0).all()
    oracle, _ = matrix.column("planted-oracle")
    assert np.allclose(oracle, np.clip(market.planted / 2.0, -1.0, 1.0))


def test_hidden_series_reach_no_strategy_the_config_does_not_name_as_a_fixture(
    tmp_path: Path,
) -> None:
    market = generate(SyntheticSettings(seed=5, bars=200), "1h")
    strategies: list[StrategyLike] = [
        PlantedOracle,
        probe(tmp_path, "peeks-at-hidden", ()),
        probe(tmp_path, "declares-hidden", ("planted",)),
    ]
    only_oracle = StrategiesSettings(fixtures=["planted-oracle"])
    for settings in (None, StrategiesSettings(), only_oracle):
        matrix = compute_signals(
            strategies,
            market.candles,
            key=KEY,
            hidden={"planted": market.planted},
            settings=settings,
        )
        refused = {"declares-hidden"} | (
            {"planted-oracle"} if settings is not only_oracle else set()
        )
        assert set(matrix.reasons) == refused, matrix.reasons
        for name in refused:
            assert "only test fixtures named in strategies.fixtures" in matrix.reasons[name]
            assert not matrix.column(name)[1].any()
        assert (matrix.column("peeks-at-hidden")[0] == -1.0).all()


def test_signals_for_stored_candles_are_computed_once(
    tmp_path: Path, good_plugin: DiscoveredStrategy
) -> None:
    market = generate(SyntheticSettings(seed=9, bars=400), "1h")
    strategies: list[StrategyLike] = [MACrossover, good_plugin, PlantedOracle]
    with Store(tmp_path / "agora.db") as store:
        store.write_candles(KEY, market.candles)
        times = market.candles["open_time"].to_numpy()
        store.write_hidden_series(KEY, "planted", times, market.planted)
        candles = store.read_candles(KEY)

        fixtures = StrategiesSettings(fixtures=["planted-oracle"])
        first = compute_signals(strategies, candles, key=KEY, store=store, settings=fixtures)
        assert first.reasons == {} and first.from_cache == frozenset()
        started = time.monotonic()
        second = compute_signals(strategies, candles, key=KEY, store=store, settings=fixtures)
        assert time.monotonic() - started < 0.3  # no sandbox child was started
        assert second.from_cache == {"ma-crossover", "volume-momentum", "planted-oracle"}
        np.testing.assert_array_equal(first.values, second.values)
        np.testing.assert_array_equal(first.mask, second.mask)
        rows = store.db.execute("SELECT COUNT(*) FROM signal_cache").fetchone()[0]
        assert rows == 3

        shorter = compute_signals(
            strategies, candles.iloc[:300], key=KEY, store=store, settings=fixtures
        )
        assert shorter.from_cache == frozenset()  # another data range
        np.testing.assert_array_equal(shorter.values, first.values[:300])

        changed = candles.copy()
        changed.loc[350, "close"] *= 1.01
        again = compute_signals([good_plugin], changed, key=KEY, store=store)
        assert again.from_cache == frozenset()  # same range, different data: recomputed


def test_a_failed_strategy_is_masked_and_the_failure_cached_with_its_reason(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raises_late.py"
    path.write_text(
        "import numpy as np\nfrom agent.plugins import Strategy\n\n\n"
        "class RaisesLate(Strategy):\n    name = 'raises-late'\n\n"
        "    def signal(self, candles):\n        raise KeyError('volume2')\n"
    )
    (item,) = discover_file(path)
    candles = generate(SyntheticSettings(seed=2, bars=120), "1h").candles
    with Store(tmp_path / "agora.db") as store:
        first = compute_signals([item, MACrossover], candles, key=KEY, store=store)
        again = compute_signals([item, MACrossover], candles, key=KEY, store=store)
    expected = "raised KeyError: 'volume2' (raises_late.py, line 9)"
    assert first.reasons == again.reasons == {"raises-late": expected}
    assert again.from_cache == {"raises-late", "ma-crossover"}
    values, mask = again.column("raises-late")
    assert not mask.any() and not values.any()
    assert isinstance(again.values, np.ndarray) and again.values.dtype == np.float64
    assert again.available == ("ma-crossover",)
    assert pd.Index(again.open_time).equals(pd.Index(candles["open_time"]))
