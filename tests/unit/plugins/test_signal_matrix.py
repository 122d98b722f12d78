"""`compute_signals` with trusted strategies only (no child process): masks, reasons, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.errors import PluginError
from agent.market.schema import SeriesKey
from agent.plugins.interface import Strategy
from agent.plugins.sandbox import SignalResult
from agent.plugins.signals import _cache_put, compute_signals, params_sha256
from agent.store import Store

KEY = SeriesKey("csv", "X/Y", "1h")
N = 40
CANDLES = pd.DataFrame(
    {
        "open_time": np.arange(N, dtype="int64") * 3_600_000,
        "open": np.linspace(10, 20, N),
        "high": np.linspace(11, 21, N),
        "low": np.linspace(9, 19, N),
        "close": np.linspace(10.5, 20.5, N),
        "volume": np.ones(N),
    },
    index=np.arange(100, 100 + N),  # the caller's index does not matter
)


class Ramp(Strategy):
    name = "ramp"
    warmup_bars = 5
    params = {"scale": 0.01}  # noqa: RUF012

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        values = np.arange(len(candles)) * self.p["scale"]
        values[:5] = np.nan
        return values


class Broken(Strategy):
    name = "broken"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        return np.full(len(candles), 3.0)


def test_failed_strategies_are_masked_and_warm_up_is_unavailable() -> None:
    matrix = compute_signals([Ramp, Broken], CANDLES, key=None)
    assert matrix.names == ("ramp", "broken")
    assert matrix.values.shape == matrix.mask.shape == (N, 2)
    assert matrix.reasons == {"broken": "strategy 'broken' returned 3.0, outside [-1, 1]"}
    ramp, ramp_mask = matrix.column("ramp")
    assert not ramp_mask[:5].any() and ramp_mask[5:].all()
    assert (ramp[:5] == 0.0).all() and ramp[10] == pytest.approx(0.1)
    assert not matrix.column("broken")[1].any() and not matrix.column("broken")[0].any()
    assert matrix.available == ("ramp",)
    np.testing.assert_array_equal(matrix.open_time, CANDLES["open_time"].to_numpy())


def test_strategy_names_must_be_unique() -> None:
    with pytest.raises(PluginError, match="names must be unique"):
        compute_signals([Ramp, Ramp], CANDLES, key=None)


def test_parameters_change_the_cache_key_but_not_their_order() -> None:
    assert params_sha256({"a": 1, "b": 2}) == params_sha256({"b": 2, "a": 1})
    assert params_sha256({"a": 1}) != params_sha256({"a": 2})


def test_cached_signals_are_keyed_by_parameters(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        first = compute_signals([Ramp], CANDLES, key=KEY, store=store)
        again = compute_signals([Ramp], CANDLES, key=KEY, store=store)
        assert again.from_cache == {"ramp"}
        np.testing.assert_array_equal(first.values, again.values)
        from agent.plugins.signals import as_discovered

        doubled = as_discovered(Ramp).with_params(scale=0.02)
        other = compute_signals([doubled], CANDLES, key=KEY, store=store)
        assert other.from_cache == frozenset()
        assert other.column("ramp")[0][10] == pytest.approx(0.2)
        assert compute_signals([Ramp], CANDLES, key=None, store=store).from_cache == frozenset()


def test_resource_failures_are_not_cached(tmp_path: Path) -> None:
    key = ["h", "p", "s", 0, 1, "d"]
    with Store(tmp_path / "a.db") as store:
        _cache_put(store, [(key, SignalResult.failure("x", "timed out after 5 s"), 2, None)])
        _cache_put(
            store,
            [
                (
                    [*key[:5], "e"],
                    SignalResult.failure("x", "exceeded the memory limit of 1 MB"),
                    2,
                    None,
                )
            ],
        )
        assert store.db.execute("SELECT COUNT(*) FROM signal_cache").fetchone()[0] == 0
        _cache_put(store, [(key, SignalResult.failure("x", "raised ValueError: no"), 2, None)])
        assert store.db.execute("SELECT COUNT(*) FROM signal_cache").fetchone()[0] == 1
