"""TradingEnv: one spot market traded through the market-coupled DEX pool.

Timing (see docs/ARCHITECTURE): the decision for bar t sees features up to the close of t,
every strategy's signal for t and the current exposure; it executes against the pool coupled
to bar t's close; its reward is the log change of portfolio value from the close of t (before
the trade) to the close of t + 1, so fee, price impact and gas are all paid out of it. Nothing
at or after t + 1 is visible at t.

Everything is precomputed in `MarketData`; `step` is one call into the compiled rollout kernel
(`agent.env.kernel`) and a row copy (no pandas).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from agent.dex.pool import PoolConfig
from agent.env.features import FEATURE_NAMES, FeatureParams
from agent.env.spec import ActionKind, PolicySpec
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
    becomes a target exposure is the `PolicySpec`'s (`self.policy_spec`).

    A step is one call into the compiled kernel (`agent.env.kernel.env_bar`: couple the pool,
    trade, value at the next close); the observations of an episode are assembled in blocks
    (`PolicySpec.observe`'s layout), so a step copies one row and sets the exposure.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, data: MarketData, config: EnvConfig | None = None) -> None:
        from agent.env import kernel

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
        kernel.ensure_compiled()
        self._kernel = kernel
        self.policy_spec = cfg.spec(data.strategy_names)
        self.observation_space = self.policy_spec.observation_space()
        self.action_space: gym.spaces.Space[Any] = self.policy_spec.action_space()
        self._close = np.ascontiguousarray(data.close, dtype="float64")
        self._features = np.ascontiguousarray(data.features, dtype=np.float32)
        self._signals = np.ascontiguousarray(data.signals, dtype=np.float32)
        self._mask = np.ascontiguousarray(data.mask, dtype=bool)
        self._params = kernel.params(cfg.pool, cfg.turnover_penalty, cfg.initial_value_quote)
        self._fresh: dict[float, np.ndarray] = {}
        self._state = np.zeros(4)
        self._row = np.zeros((len(kernel.COLUMNS), 1))
        self._trade = np.zeros(kernel.TRADE_SIZE)
        self._levels = self.policy_spec.exposure_levels
        self._discrete = self.policy_spec.action == "discrete"
        self._visible = np.ones(data.n_strategies, dtype=bool)
        self._block = np.zeros((0, self.policy_spec.observation_size), dtype=np.float32)
        self._block_start = 0
        self._t = cfg.first_bar
        self._end = data.bars - 1
        self._exposure_now = 0.0

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
        price = float(self._close[start])
        fresh = self._fresh.get(price)
        if fresh is None:  # the mirror's fresh pool at this price (cached: resets are frequent)
            fresh = self._kernel.initial_state(cfg.pool, price, cfg.initial_value_quote)
            self._fresh[price] = fresh
        self._state[:] = fresh
        self._exposure_now = 0.0
        self._block = self._block[:0]
        return self.observation(), {"value_quote": cfg.initial_value_quote, "bar": start}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._discrete:
            target = self._levels[int(action)]
        else:
            target = self.policy_spec.target_exposure(action)
        t = self._t
        row, trade = self._row, self._trade
        reward = self._kernel.env_bar(
            self._state, self._params, self._close, t, target, row, 0, trade
        )
        self._t = t + 1
        self._exposure_now = float(trade[_NEXT_EXPOSURE])
        terminated = bool(trade[_RUINED])
        truncated = not terminated and self._t >= self._end
        values = row[:, 0].tolist()
        info = {
            "bar": t,
            "target_exposure": target,
            "exposure_before": values[2],
            "side": _SIDES[int(values[4])],
            "fee_quote": values[6],
            "impact_quote": values[7],
            "gas_quote": values[8],
            "value_quote": values[0],
        }
        return self.observation(), float(reward), terminated, truncated, info

    # --- helpers ----------------------------------------------------------------------------
    def target_exposure(self, action: Any) -> float:
        """Map an action of this environment's action space to a target exposure in [0, 1]."""
        return self.policy_spec.target_exposure(action)

    def exposure_now(self) -> float:
        """The portfolio's exposure at the current bar's close."""
        return self._exposure_now

    def observation(self) -> np.ndarray:
        """What the policy sees at the current bar (`PolicySpec.observe`'s layout)."""
        t = self._t
        at = t - self._block_start
        if not 0 <= at < len(self._block):
            self._fill_block(t)
            at = 0
        obs = self._block[at].copy()
        obs[-1] = self._exposure_now
        return obs

    def _fill_block(self, t: int) -> None:
        """Assemble the observations of bars t .. t + 1,023 (up to the episode's end)."""
        spec = self.policy_spec
        bars = np.arange(t, min(t + _BLOCK, self._end) + 1)
        lookback = np.arange(1 - spec.lookback_bars, 1)
        window = self._features[bars[:, None] + lookback[None, :]].reshape(len(bars), -1)
        shown = self._mask[bars] & self._visible
        values = np.where(shown, self._signals[bars], np.float32(0.0))
        block = np.empty((len(bars), spec.observation_size), dtype=np.float32)
        width = window.shape[1]
        n = self.data.n_strategies
        block[:, :width] = window
        block[:, width : width + n] = values
        block[:, width + n : width + 2 * n] = shown
        block[:, -1] = 0.0
        self._block, self._block_start = block, t

    @property
    def portfolio(self) -> tuple[float, float]:
        """The agent's (base, quote) balances in token units (float64, as the kernel holds them)."""
        from agent.env.kernel import S_BASE, S_QUOTE

        return float(self._state[S_BASE]), float(self._state[S_QUOTE])


_BLOCK = 1_024
"""Observations assembled at once (a few hundred kB)."""
_SIDES = {0: "none", 1: "buy", -1: "sell"}
_NEXT_EXPOSURE, _RUINED = 6, 7
"""`agent.env.kernel.T_NEXT_EXPOSURE` and `T_RUINED` (the kernel is imported lazily)."""
