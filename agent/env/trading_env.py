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

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from agent.dex.pool import MarketCoupledPool, PoolConfig
from agent.env.features import FEATURE_NAMES, FeatureParams
from agent.env.rollout import Step, execute_target
from agent.env.spec import BASE_SCALE, QUOTE_SCALE, ActionKind, PolicySpec
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.config import Settings


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

    def digest(self) -> str:
        """Return the sha256 of everything a policy reads, in a fixed byte layout: the data hash.

        Covers open times, closes, features, signals, masks and strategy names, so two data
        sets with the same hash give any policy the same observations and rewards. Training
        runs, backtests and reward epochs record this one hash.
        """
        digest = hashlib.sha256()
        digest.update(f"features={','.join(FEATURE_NAMES)};bars={self.bars};".encode())
        digest.update(("strategies=" + "\0".join(self.strategy_names) + ";").encode())
        for array, dtype in (
            (self.open_time, "<i8"),
            (self.close, "<f8"),
            (self.features, "<f4"),
            (self.signals, "<f4"),
            (self.mask, "|b1"),
        ):
            digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
        return digest.hexdigest()

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

    def spec(self, strategies: tuple[str, ...] | list[str] = ()) -> PolicySpec:
        """Return the policy spec of this environment over `strategies`."""
        return PolicySpec(tuple(strategies), self.lookback_bars, self.action, self.exposure_levels)

    @classmethod
    def from_settings(cls, settings: Settings, action: ActionKind | None = None) -> EnvConfig:
        """Return the environment the configuration describes (agent section, dex pool)."""
        agent = settings.agent
        return cls(
            lookback_bars=agent.lookback_bars,
            action=action or agent.action,
            exposure_levels=tuple(agent.exposure_levels),
            episode_bars=agent.episode_bars,
            first_bar=max(FeatureParams().warmup_bars, agent.lookback_bars - 1),
            strategy_dropout=agent.strategy_dropout,
            turnover_penalty=agent.turnover_penalty,
            initial_value_quote=agent.initial_value_quote,
            pool=PoolConfig.from_settings(settings.dex),
        )

    def for_spec(self, spec: PolicySpec) -> EnvConfig:
        """Return this environment observing as `spec` does."""
        return replace(
            self,
            lookback_bars=spec.lookback_bars,
            action=spec.action,
            exposure_levels=spec.exposure_levels,
            first_bar=max(self.first_bar, spec.first_bar),
        )


class TradingEnv(gym.Env[np.ndarray, Any]):
    """A gymnasium environment over one market's precomputed data.

    `reset(options={"start": i, "end": j})` runs a fixed window (evaluation); without it the
    episode is a random window of `episode_bars`. `options={"strategy_mask": m}` forces which
    strategies are visible (attribution); otherwise each strategy is dropped for the whole
    episode with probability `strategy_dropout`. What the agent observes and how an action
    becomes a target exposure is the `PolicySpec`'s (`self.policy_spec`); one bar is `advance`.
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
        if data.features.shape[1] != len(FEATURE_NAMES):
            raise ConfigError(
                f"the data has {data.features.shape[1]} feature columns; the policy spec "
                f"observes {len(FEATURE_NAMES)}"
            )
        self.policy_spec = cfg.spec(data.strategy_names)
        self.observation_space = self.policy_spec.observation_space()
        self.action_space: gym.spaces.Space[Any] = self.policy_spec.action_space()
        self.closes: list[float] = data.close.astype("float64").tolist()
        self._features = np.ascontiguousarray(data.features, dtype=np.float32)
        self._signals = np.ascontiguousarray(data.signals, dtype=np.float32)
        self._mask = np.ascontiguousarray(data.mask, dtype=bool)
        self.pool = MarketCoupledPool(cfg.pool)
        self._visible = np.ones(data.n_strategies, dtype=bool)
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
        price = self.closes[start]
        self.pool.reset(price)
        self._base = 0
        self._quote = round(cfg.initial_value_quote * QUOTE_SCALE)
        return self.observation(), {"value_quote": self._value(price), "bar": start}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        step = self.advance(self.policy_spec.target_exposure(action))
        trade = step.fill.trade
        truncated = not step.terminated and self._t >= self._end
        info = {
            "bar": step.t,
            "target_exposure": step.target,
            "exposure_before": step.exposure_before,
            "side": trade.side,
            "fee_quote": trade.fee_paid_quote / QUOTE_SCALE,
            "impact_quote": trade.price_impact_quote / QUOTE_SCALE,
            "gas_quote": trade.gas_quote / QUOTE_SCALE,
            "value_quote": step.value_after,
        }
        return self.observation(), step.reward, step.terminated, truncated, info

    # --- one bar ----------------------------------------------------------------------------
    def advance(self, target: float, observation: np.ndarray | None = None) -> Step:
        """Decide the current bar with `target` exposure and move to the next bar.

        The pool is coupled to the bar's close and the portfolio rebalanced (`execute_target`);
        the reward is the log change of value from this close (before the trade) to the next
        one, minus the turnover penalty.
        """
        t = self._t
        price = self.closes[t]
        base_before = self._base
        value_before = self._value(price)
        exposure_before = self._exposure(price, value_before)
        fill = execute_target(self.pool, self._base, self._quote, target, price)
        trade = fill.trade
        self._base, self._quote = trade.base_balance, trade.quote_balance
        value_after = self._value(self.closes[t + 1])
        reward = math.log(value_after / value_before) if value_after > 0 else -10.0
        if trade.side != "none":
            reward -= self.config.turnover_penalty * abs(target - exposure_before)
        self._t = t + 1
        return Step(
            t=t,
            observation=observation,
            target=target,
            exposure_before=exposure_before,
            fill=fill,
            base_before=base_before,
            base=self._base,
            quote=self._quote,
            value_before=value_before,
            value_after=value_after,
            reward=float(reward),
            terminated=value_after <= 0.01 * self.config.initial_value_quote,
        )

    # --- helpers ----------------------------------------------------------------------------
    def target_exposure(self, action: Any) -> float:
        """Map an action of this environment's action space to a target exposure in [0, 1]."""
        return self.policy_spec.target_exposure(action)

    def exposure_now(self) -> float:
        """The portfolio's exposure at the current bar's close."""
        price = self.closes[self._t]
        return self._exposure(price, self._value(price))

    def _value(self, price: float) -> float:
        return self._base / BASE_SCALE * price + self._quote / QUOTE_SCALE

    def _exposure(self, price: float, value: float) -> float:
        return (self._base / BASE_SCALE * price) / value if value > 0 else 0.0

    def observation(self) -> np.ndarray:
        """What the policy sees at the current bar (`PolicySpec.observe`)."""
        return self.policy_spec.observe(
            self._features, self._signals, self._mask, self._t, self.exposure_now(), self._visible
        )

    @property
    def portfolio(self) -> tuple[int, int]:
        """The agent's (base, quote) balances in token units."""
        return self._base, self._quote
