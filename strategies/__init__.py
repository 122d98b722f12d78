"""The strategy plugins shipped with Agora, and the examples a contributor starts from.

`SHIPPED` lists the classes offered to users. Test fixtures live in `strategies.testing` and
are deliberately not in it.
"""

from __future__ import annotations

from agent.plugins.interface import Strategy
from strategies.bollinger import BollingerReversion
from strategies.donchian import DonchianBreakout
from strategies.ma_crossover import MACrossover
from strategies.macd import MACD
from strategies.momentum import TSMomentum
from strategies.rsi_reversion import RSIReversion

SHIPPED: tuple[type[Strategy], ...] = (
    MACrossover,
    RSIReversion,
    BollingerReversion,
    MACD,
    DonchianBreakout,
    TSMomentum,
)
"""The user-facing strategies, in the order they are listed."""

__all__ = [
    "MACD",
    "SHIPPED",
    "BollingerReversion",
    "DonchianBreakout",
    "MACrossover",
    "RSIReversion",
    "TSMomentum",
]
