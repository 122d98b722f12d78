"""Data sets: chronological splits that leak nothing, strategy specs, hashes, the store path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.config import SplitSettings, SyntheticSettings
from agent.errors import ConfigError, DataError
from agent.learn.dataset import Dataset, dataset_from_candles, load_dataset, split_windows
from agent.market.synthetic import SyntheticMarket, synth
from agent.plugins.resolve import parse_strategy_spec, resolve_strategies
from agent.store import Store
from tests.unit.learn.conftest import tiny_settings


def test_split_is_chronological_contiguous_and_covers_every_bar() -> None:
    times = np.arange(1_000, dtype="int64") * 3_600_000
    windows = split_windows(times, SplitSettings(train=0.6, validation=0.2, test=0.2))
    train, validation, test = windows["train"], windows["validation"], windows["test"]
    assert (train.start, train.end) == (0, 600)
    assert (validation.start, validation.end) == (600, 800)
    assert (test.start, test.end) == (800, 1_000)
    assert train.end_ms < validation.start_ms <= validation.end_ms < test.start_ms


def test_split_refuses_windows_too_short_to_measure() -> None:
    times = np.arange(30, dtype="int64")
    with pytest.raises(DataError, match="validation split has"):
        split_windows(times, SplitSettings(train=0.8, validation=0.1, test=0.1))


def test_fractions_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="must be 1"):
        SplitSettings(train=0.5, validation=0.2, test=0.2)


def test_environment_data_of_a_split_ends_at_the_split(tiny_dataset: Dataset) -> None:
    for name in ("train", "validation", "test"):
        data, start, end = tiny_dataset.env_data(name)  # type: ignore[arg-type]
        window = tiny_dataset.windows[name]  # type: ignore[index]
        assert data.bars == window.end
        assert data.open_time[-1] == window.end_ms
        assert end == window.end - 1  # the last decision is measured at the split's last bar
    _, start, _ = tiny_dataset.env_data("validation")
    assert start == tiny_dataset.windows["validation"].start


def test_strategy_spec_parses_name_and_yaml_values() -> None:
    assert parse_strategy_spec("macd") == ("macd", {})
    assert parse_strategy_spec("noise:seed=3") == ("noise", {"seed": 3})
    assert parse_strategy_spec("ts-momentum:lookback=12, scale=0.5") == (
        "ts-momentum",
        {"lookback": 12, "scale": 0.5},
    )
    with pytest.raises(ConfigError, match="expected name:param=value"):
        parse_strategy_spec("noise:seed")


def test_specs_name_the_signal_columns_so_one_strategy_can_appear_twice() -> None:
    resolved = resolve_strategies(["noise:seed=1", "noise:seed=2", "macd"])
    assert [item.name for item in resolved] == ["noise:seed=1", "noise:seed=2", "macd"]
    assert resolved[0].params == {"seed": 1}


def test_unknown_strategy_is_a_config_error(tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path)
    settings = settings.model_copy(
        update={"strategies": settings.strategies.model_copy(update={"plugin_dir": tmp_path})}
    )
    with pytest.raises(ConfigError, match="no strategy named 'nope'"):
        resolve_strategies(["nope"], settings)


def test_dataset_has_one_signal_column_per_spec_with_warmup_masked(
    tiny_dataset: Dataset,
) -> None:
    data = tiny_dataset.data
    assert data.strategy_names == ("planted-oracle", "noise:seed=1", "ts-momentum")
    assert data.mask[:, 0].all() and data.mask[:, 1].all()
    momentum_mask = data.mask[:, 2]
    assert not momentum_mask[:10].any() and momentum_mask[100:].all()
    assert np.all(data.signals[~data.mask] == 0.0)


def test_data_hash_is_stable_and_changes_with_any_candle(
    tiny_market: SyntheticMarket, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    assert tiny_dataset.data.digest() == tiny_dataset.data_hash
    candles = tiny_market.candles.copy()
    candles.loc[500, "volume"] *= 1.5
    settings = tiny_settings(tmp_path)
    other = dataset_from_candles(candles, settings, hidden={"planted": tiny_market.planted})
    assert other.data_hash != tiny_dataset.data_hash


def test_load_dataset_reads_candles_and_the_planted_series_from_the_store(
    tmp_path: Path, tiny_dataset: Dataset
) -> None:
    settings = tiny_settings(tmp_path)
    with Store(tmp_path / "agora.db") as store:
        synth(store, SyntheticSettings(seed=3, bars=900), "SYN/USD", "1h")
        dataset = load_dataset(store, settings)
    assert dataset.key is not None and str(dataset.key) == "synthetic:SYN/USD:1h"
    assert dataset.data_hash == tiny_dataset.data_hash
    assert not dataset.reasons


def test_load_dataset_without_candles_says_how_to_get_some(tmp_path: Path) -> None:
    with Store(tmp_path / "agora.db") as store, pytest.raises(DataError, match="agora data"):
        load_dataset(store, tiny_settings(tmp_path))
