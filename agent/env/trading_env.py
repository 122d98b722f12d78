"""TradingEnv: one spot market traded through the market-coupled DEX pool.

Timing (see docs/ARCHITECTURE): the decision for bar t sees features up to the close of t,
every strategy's signal for t and the current exposure; it executes against the pool coupled
to bar t's close; its reward is the log change of portfolio value from the close of t (before
the trade) to the close of t + 1, so fee, price impact and gas are all paid out of it. Nothing
at or after t + 1 is visible at t.

Everything is precomputed in `MarketData`; `step` does integer pool math and array indexing
only (no pandas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from agent.dex.amm import BASE_DECIMALS, QUOTE_DECIMALS
from agent.dex.pool import MarketCoupledPool, PoolConfig
from agent.env.features import CLIP
from agent.errors import ConfigError

ActionKind = Literal["discrete", "continuous"]
_BASE_SCALE = 10.0**BASE_DECIMALS
_QUOTE_SCALE = 10.0**QUOTE_DECIMALS


@dataclass(frozen=True)
class MarketData:
    """Precomputed per-bar arrays of one market, aligned on the bar index.

    Attributes:
        open_time: bar open times (ms).
        close: closing prices (quote per base).
        features: float32 [bars, features], causal and normalised.
        signals: float32 [bars, strategies], 0 where unavailable.
        mask: bool [bars, strategies], True where the strategy's signal is available.
        strategy_names: the strategies, in column order.
    """

    open_time: np.ndarray
    close: np.ndarray
    features: np.ndarray
    signals: np.ndarray
    mask: np.ndarray
    strategy_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bars = len(self.close)
        for name in ("open_time", "features", "signals", "mask"):
            if len(getattr(self, name)) != bars:
                raise ValueError(
                    f"MarketData.{name} has {len(getattr(self, name))} rows, not {bars}"
                )
        if self.signals.shape[1] != len(self.strategy_names):
            raise ValueError("MarketData.signals has a column count unlike strategy_names")

    @property
    def bars(self) -> int:
        return len(self.close)

    @property
    def n_strategies(self) -> int:
        return int(self.signals.shape[1])

    def window(self, start: int, end: int) -> MarketData:
        """Return bars [start, end) as a new MarketData (views, no copies)."""
        return replace(
            self,
            open_time=self.open_time[start:end],
            close=self.close[start:end],
            features=self.features[start:end],
            signals=self.signals[start:end],
            mask=self.mask[start:end],
        )


@dataclass(frozen=True)
class EnvConfig:
    """How the environment presents the market and scores the agent."""

    lookback_bars: int = 16
    action: ActionKind = "discrete"
    exposure_levels: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    episode_bars: int = 720
    first_bar: int = 48
    """Bars at the start of the data never decided on (feature warm-up and look-back)."""
    strategy_dropout: float = 0.0
    turnover_penalty: float = 0.0
    initial_value_quote: float = 10_000.0
    pool: PoolConfig = field(default_factory=PoolConfig)

    def __post_init__(self) -> None:
        if self.lookback_bars < 1:
            raise ConfigError(f"lookback_bars is {self.lookback_bars}; expected >= 1")
        if self.first_bar < self.lookback_bars - 1:
            raise ConfigError("first_bar must leave room for the look-back window")
        if not self.exposure_levels or not all(0 <= x <= 1 for x in self.exposure_levels):
            raise ConfigError("exposure_levels must be non-empty values in [0, 1]")
        if not 0.0 <= self.strategy_dropout < 1.0:
            raise ConfigError(f"strategy_dropout is {self.strategy_dropout}; expected [0, 1)")
        if self.episode_bars < 2:
            raise ConfigError(f"episode_bars is {self.episode_bars}; expected >= 2")


class TradingEnv(gym.Env[np.ndarray, Any]):
    """A gymnasium environment over one market's precomputed data.

    `reset(options={"start": i, "end": j})` runs a fixed window (evaluation); without it the
    episode is a random window of `episode_bars`. `options={"strategy_mask": m}` forces which
    strategies are visible (attribution); otherwise each strategy is dropped for the whole
    episode with probability `strategy_dropout`.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, data: MarketData, config: EnvConfig | None = None) -> None:
        self.data = data
        self.config = config or EnvConfig()
        cfg = self.config
        if data.bars < cfg.first_bar + 2:
            raise ConfigError(
                f"the data has {data.bars} bars; the environment needs at least "
                f"{cfg.first_bar + 2} (first_bar + 2)"
            )
        n_features = data.features.shape[1]
        n_strategies = data.n_strategies
        self._obs_size = cfg.lookback_bars * n_features + 2 * n_strategies + 1
        self.observation_space = gym.spaces.Box(
            low=-CLIP, high=CLIP, shape=(self._obs_size,), dtype=np.float32
        )
        self.action_space: gym.spaces.Space[Any]
        if cfg.action == "discrete":
            self.action_space = gym.spaces.Discrete(len(cfg.exposure_levels))
        else:
            self.action_space = gym.spaces.Box(low=0.0, high=1.0, shape=(1,), dtype=np.float32)
        self._close = data.close.astype("float64").tolist()
        self._features = np.ascontiguousarray(data.features, dtype=np.float32)
        self._signals = np.ascontiguousarray(data.signals, dtype=np.float32)
        self._mask = np.ascontiguousarray(data.mask, dtype=bool)
        self.pool = MarketCoupledPool(cfg.pool)
        self._visible = np.ones(n_strategies, dtype=bool)
        self._t = cfg.first_bar
        self._end = data.bars - 1
        self._base = 0
        self._quote = 0

    # --- gymnasium API ----------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        cfg = self.config
        options = options or {}
        last_decision = self.data.bars - 2
        if "start" in options:
            start = int(options["start"])
            end = int(options.get("end", self.data.bars - 1))
        else:
            span = min(cfg.episode_bars, last_decision - cfg.first_bar + 1)
            start = int(self.np_random.integers(cfg.first_bar, last_decision - span + 2))
            end = start + span
        if not cfg.first_bar <= start < end <= self.data.bars - 1:
            raise ValueError(
                f"episode window [{start}, {end}) must lie within "
                f"[{cfg.first_bar}, {self.data.bars - 1})"
            )
        if "strategy_mask" in options:
            visible = np.asarray(options["strategy_mask"], dtype=bool)
            if visible.shape != (self.data.n_strategies,):
                raise ValueError("strategy_mask needs one boolean per strategy")
            self._visible = visible
        elif cfg.strategy_dropout > 0:
            self._visible = self.np_random.random(self.data.n_strategies) >= cfg.strategy_dropout
        else:
            self._visible = np.ones(self.data.n_strategies, dtype=bool)
        self._t, self._end = start, end
        price = self._close[start]
        self.pool.reset(price)
        self._base = 0
        self._quote = round(cfg.initial_value_quote * _QUOTE_SCALE)
        return self._observation(), {"value_quote": self._value(price), "bar": start}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        target = self.target_exposure(action)
        t = self._t
        price = self._close[t]
        value_before = self._value(price)
        exposure_before = self._exposure(price, value_before)
        trade = self.pool.trade_to_exposure(self._base, self._quote, target, price)
        self._base, self._quote = trade.base_balance, trade.quote_balance
        next_price = self._close[t + 1]
        value_after = self._value(next_price)
        reward = math.log(value_after / value_before) if value_after > 0 else -10.0
        turnover = abs(target - exposure_before) if trade.side != "none" else 0.0
        reward -= self.config.turnover_penalty * turnover
        self._t = t + 1
        self.pool.couple(next_price)
        terminated = value_after <= 0.01 * self.config.initial_value_quote
        truncated = not terminated and self._t >= self._end
        info = {
            "bar": t,
            "target_exposure": target,
            "exposure_before": exposure_before,
            "side": trade.side,
            "fee_quote": trade.fee_paid_quote / _QUOTE_SCALE,
            "impact_quote": trade.price_impact_quote / _QUOTE_SCALE,
            "gas_quote": trade.gas_quote / _QUOTE_SCALE,
            "value_quote": value_after,
        }
        return self._observation(), float(reward), terminated, truncated, info

    # --- helpers ----------------------------------------------------------------------------
    def target_exposure(self, action: Any) -> float:
        """Map an action of this environment's action space to a target exposure in [0, 1]."""
        if self.config.action == "discrete":
            return float(self.config.exposure_levels[int(action)])
        return float(min(1.0, max(0.0, float(np.asarray(action).reshape(-1)[0]))))

    def _value(self, price: float) -> float:
        return self._base / _BASE_SCALE * price + self._quote / _QUOTE_SCALE

    def _exposure(self, price: float, value: float) -> float:
        return (self._base / _BASE_SCALE * price) / value if value > 0 else 0.0

    def _observation(self) -> np.ndarray:
        t = self._t
        lookback = self.config.lookback_bars
        window = self._features[t - lookback + 1 : t + 1].ravel()
        visible = self._mask[t] & self._visible
        signals = np.where(visible, self._signals[t], 0.0)
        price = self._close[t]
        exposure = self._exposure(price, self._value(price))
        obs = np.concatenate([window, signals, visible, [exposure]]).astype(np.float32)
        return obs

    @property
    def portfolio(self) -> tuple[int, int]:
        """The agent's (base, quote) balances in token units."""
        return self._base, self._quote
