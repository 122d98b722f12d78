"""The policy contract: what the agent observes and how its action becomes a target exposure.

A `PolicySpec` is everything a trained policy needs to be run again, anywhere: the strategies
whose signals it sees (in column order), the look-back of market features, the action kind and
the exposure levels of a discrete action. It owns the observation (`observe`, `observation_size`),
the action mapping (`target_exposure`) and its round trip through a model file's metadata. The
TradingEnv, the rollout, the backtest, reward epochs, the promotion gate and the service all
use it, so changing what the policy observes is a change here and nowhere else.

An observation at bar t is, as float32, in this order: the look-back window of market features
(bars t - lookback + 1 .. t, row by row), each strategy's signal (0 where it is not visible),
each strategy's visibility (1/0), and the portfolio's exposure at bar t's close before the
decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

from agent.dex.amm import BASE_DECIMALS, QUOTE_DECIMALS
from agent.env.features import CLIP, FEATURE_NAMES
from agent.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from agent.config import Settings

ActionKind = Literal["discrete", "continuous"]
ACTION_KINDS: tuple[ActionKind, ...] = ("discrete", "continuous")
BASE_SCALE = 10.0**BASE_DECIMALS
QUOTE_SCALE = 10.0**QUOTE_DECIMALS
METADATA_KEYS = ("strategies", "lookback_bars", "action", "exposure_levels", "observation_size")
"""The keys of a model file's metadata that describe its policy spec."""


def portfolio_value(base: int, quote: int, price: float) -> float:
    """Return the portfolio's value at `price`, in quote currency (USD)."""
    return base / BASE_SCALE * price + quote / QUOTE_SCALE


def exposure(base: int, quote: int, price: float) -> float:
    """Return the fraction of the portfolio held in base at `price` (0 for an empty one)."""
    held = base / BASE_SCALE * price
    value = held + quote / QUOTE_SCALE
    return held / value if value > 0 else 0.0


@dataclass(frozen=True)
class ObservationParts:
    """One observation taken apart (the layout of the module docstring).

    Attributes:
        window: float32 [lookback, features]: the look-back window, oldest bar first.
        signals: float32 [strategies]: each signal, 0 where it was not visible.
        visible: bool [strategies]: which signals were visible.
        exposure: the portfolio's exposure before the decision.
    """

    window: np.ndarray
    signals: np.ndarray
    visible: np.ndarray
    exposure: float


def observation_parts(observation: Any, n_strategies: int) -> ObservationParts:
    """Take apart an observation of a policy that saw `n_strategies` signals (`observe` undone).

    The look-back follows from the size, so an observation of another spec (a model with
    another look-back) comes apart as well.

    Raises:
        ModelError: the size fits no look-back with `n_strategies` signals, or a visibility
            value is not 0 or 1.
    """
    values = np.asarray(observation, dtype=np.float32).reshape(-1)
    n_features = len(FEATURE_NAMES)
    rest = values.size - 2 * n_strategies - 1
    if rest < n_features or rest % n_features:
        raise ModelError(
            f"an observation of {values.size} values does not fit {n_strategies} strategies: "
            f"expected {n_features} x lookback + {2 * n_strategies + 1} values"
        )
    shown = values[rest + n_strategies : rest + 2 * n_strategies]
    if not np.isin(shown, (0.0, 1.0)).all():
        raise ModelError(f"an observation's visibility values {shown.tolist()} are not all 0 or 1")
    return ObservationParts(
        window=values[:rest].reshape(rest // n_features, n_features),
        signals=values[rest : rest + n_strategies],
        visible=shown == 1.0,
        exposure=float(values[-1]),
    )


@dataclass(frozen=True)
class PolicySpec:
    """What a policy observes and how its action maps to a target exposure.

    Attributes:
        strategies: the strategy specs whose signals it observes, in column order.
        lookback_bars: bars of market features in one observation.
        action: 'discrete' (an index into `exposure_levels`) or 'continuous' (the exposure).
        exposure_levels: the target exposures of a discrete action, each in [0, 1].
    """

    strategies: tuple[str, ...] = ()
    lookback_bars: int = 16
    action: ActionKind = "discrete"
    exposure_levels: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategies", tuple(str(s) for s in self.strategies))
        object.__setattr__(self, "exposure_levels", tuple(float(x) for x in self.exposure_levels))
        if self.lookback_bars < 1:
            raise ConfigError(f"lookback_bars is {self.lookback_bars}; expected >= 1")
        if self.action not in ACTION_KINDS:
            raise ConfigError(f"action is {self.action!r}; expected one of {list(ACTION_KINDS)}")
        if not self.exposure_levels or not all(0 <= x <= 1 for x in self.exposure_levels):
            raise ConfigError("exposure_levels must be non-empty values in [0, 1]")

    # --- observation ----------------------------------------------------------------------------
    @property
    def n_strategies(self) -> int:
        return len(self.strategies)

    @property
    def observation_size(self) -> int:
        """Values in one observation."""
        return self.lookback_bars * len(FEATURE_NAMES) + 2 * self.n_strategies + 1

    @property
    def first_bar(self) -> int:
        """The first bar that has a whole look-back window behind it."""
        return self.lookback_bars - 1

    def observation_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(
            low=-CLIP, high=CLIP, shape=(self.observation_size,), dtype=np.float32
        )

    def observe(
        self,
        features: np.ndarray,
        signals: np.ndarray,
        mask: np.ndarray,
        t: int,
        exposure_now: float,
        visible: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return the observation at bar t (see the module docstring for the layout).

        Args:
            features: float32 [bars, features], causal (`agent.env.features`).
            signals: [bars, strategies] signals, in this spec's strategy order.
            mask: bool [bars, strategies], where each signal is available.
            t: the bar decided on.
            exposure_now: the portfolio's exposure at bar t's close, before the decision.
            visible: bool [strategies]: which strategies may be seen at all (attribution,
                dropout); default every one.
        """
        if t < self.first_bar:
            raise ModelError(f"bar {t} has fewer than {self.lookback_bars} bars of history")
        window = features[t - self.lookback_bars + 1 : t + 1]
        shown = mask[t] if visible is None else mask[t] & visible
        values = np.where(shown, np.asarray(signals[t], dtype=np.float32), np.float32(0.0))
        return np.concatenate([window.ravel(), values, shown, [exposure_now]]).astype(np.float32)

    # --- action ---------------------------------------------------------------------------------
    def action_space(self) -> gym.spaces.Space[Any]:
        if self.action == "discrete":
            return gym.spaces.Discrete(len(self.exposure_levels))
        return gym.spaces.Box(low=0.0, high=1.0, shape=(1,), dtype=np.float32)

    def target_exposure(self, action: Any) -> float:
        """Map an action of this spec's action space to a target exposure in [0, 1]."""
        if self.action == "discrete":
            return self.exposure_levels[int(action)]
        return float(min(1.0, max(0.0, float(np.asarray(action).reshape(-1)[0]))))

    def action_for(self, target: float) -> Any:
        """Return the action whose target exposure is nearest to `target` (for baselines)."""
        if self.action == "discrete":
            levels = np.asarray(self.exposure_levels)
            return int(np.argmin(np.abs(levels - target)))
        return np.array([target], dtype=np.float32)

    # --- model metadata -------------------------------------------------------------------------
    def to_metadata(self) -> dict[str, Any]:
        """Return the spec as a model file's metadata entries."""
        return {
            "strategies": list(self.strategies),
            "lookback_bars": self.lookback_bars,
            "action": self.action,
            "exposure_levels": list(self.exposure_levels),
            "observation_size": self.observation_size,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], where: str = "model") -> PolicySpec:
        """Rebuild the spec a model was trained with from its metadata.

        Raises:
            ModelError: the metadata is incomplete, malformed or inconsistent.
        """
        try:
            spec = cls(
                strategies=tuple(str(s) for s in metadata["strategies"]),
                lookback_bars=int(metadata["lookback_bars"]),
                action=metadata["action"],
                exposure_levels=tuple(float(x) for x in metadata["exposure_levels"]),
            )
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ModelError(f"{where} has incomplete or malformed metadata: {e}") from e
        stated = metadata.get("observation_size")
        if stated is not None and int(stated) != spec.observation_size:
            raise ModelError(
                f"{where} states {stated} observation values but its spec gives "
                f"{spec.observation_size} ({spec.lookback_bars} bars, {spec.n_strategies} "
                "strategies)"
            )
        return spec

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        action: ActionKind | None = None,
        strategies: Sequence[str] | None = None,
    ) -> PolicySpec:
        """Return the spec the configuration describes (the `agent` section)."""
        agent = settings.agent
        return cls(
            strategies=tuple(agent.strategies if strategies is None else strategies),
            lookback_bars=agent.lookback_bars,
            action=action or agent.action,
            exposure_levels=tuple(agent.exposure_levels),
        )

    def with_strategies(self, strategies: Sequence[str]) -> PolicySpec:
        """Return this spec observing `strategies` instead."""
        return PolicySpec(tuple(strategies), self.lookback_bars, self.action, self.exposure_levels)
