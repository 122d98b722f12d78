"""Tiny data sets and settings for the learning tests: small nets, a few hundred steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings, SyntheticSettings
from agent.learn.dataset import Dataset, dataset_from_candles
from agent.market.synthetic import SyntheticMarket, generate

TINY_AGENT: dict[str, Any] = {
    "strategies": ["planted-oracle", "noise:seed=1", "ts-momentum"],
    "lookback_bars": 4,
    "exposure_levels": [0.0, 0.5, 1.0],
    "episode_bars": 64,
    "timesteps": 256,
    "eval_every_steps": 128,
    "net_arch": [16],
    "n_steps": 64,
    "batch_size": 32,
    "learning_starts": 64,
    "buffer_size": 1_000,
}


def tiny_settings(data_dir: Path, **agent: Any) -> Settings:
    return Settings.model_validate(
        {
            "data": {"dir": str(data_dir)},
            "agent": {**TINY_AGENT, **agent},
            "strategies": {"fixtures": ["planted-oracle"]},
        }
    )


@pytest.fixture(scope="session")
def tiny_market() -> SyntheticMarket:
    return generate(SyntheticSettings(seed=3, bars=900), "1h")


@pytest.fixture(scope="session")
def tiny_dataset(tiny_market: SyntheticMarket, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    settings = tiny_settings(tmp_path_factory.mktemp("data"))
    return dataset_from_candles(
        tiny_market.candles, settings, hidden={"planted": tiny_market.planted}
    )
