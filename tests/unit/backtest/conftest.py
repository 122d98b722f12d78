"""Fixtures for the backtest unit tests: small seeded markets built by the real pipeline."""

from __future__ import annotations

import pandas as pd
import pytest

from agent.config import SyntheticSettings
from agent.env.trading_env import MarketData
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from strategies import SHIPPED


def synthetic_candles(bars: int = 600, seed: int = 11) -> pd.DataFrame:
    """A seeded synthetic hourly market (fat tails, volatility clustering, regimes)."""
    return generate(SyntheticSettings(bars=bars, seed=seed), "1h").candles


def build_market(candles: pd.DataFrame, with_signals: bool = True) -> MarketData:
    """Features and every shipped strategy's signal, as `agora backtest` computes them."""
    return build_market_data(candles, list(SHIPPED) if with_signals else [])[0]


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return synthetic_candles()


@pytest.fixture(scope="module")
def market(candles: pd.DataFrame) -> MarketData:
    return build_market(candles)
