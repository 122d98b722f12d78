"""The reward epoch's game: the policy re-run over the epoch with only some strategies real.

Players are strategies, in registration order (the earliest first). v(S) is the agent's result
over the epoch, bar by bar, when only the strategies in S show their real signal:

- A strategy outside S shows its **null**: its own median value, with its real availability
  mask. The policy is memoryless (an MLP over one bar's observation), so the null shows it
  only inputs it saw in training: each strategy's most typical value, available where it really
  was. What the null removes is the signal's variation with the market: its information.
- A strategy that the earlier-registered players explain well (R² of its signal on theirs and
  their lags at least `group_r2`) is **neutralised**: its signal is split into the part the
  earlier signals predict (`agent.env.neutral.Projection`) and its residual. It is shown as
  the prediction computed from what the earlier players show in the coalition, plus its
  residual when it is in S, or the residual's median when it is not. Its own Shapley value is
  then the worth of its residual alone; the predictable part travels with the earlier
  strategies that carry it. An exact copy has no residual and is a null player, so it earns
  nothing and takes nothing from the original; a near copy earns what its difference is worth.

With every player real, every column is exactly the real signal: v(all) is the agent's own
result. The game is a plain cooperative game over the players, so its Shapley values keep
efficiency, symmetry between players the rule treats alike, and the null player.

v(S) is a series: the agent's log return (or value change) at each bar of the epoch; the
attribution sums it and bootstraps it (`agent.rewards.attribution`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from agent.env.neutral import Projection, explain, fit
from agent.env.rollout import ModelPolicy, rollout
from agent.env.trading_env import EnvConfig, MarketData

Metric = Literal["log_return", "value_change"]
Coalition = frozenset[int]
DEFAULT_GROUP_R2 = 0.5
DEFAULT_LAGS = 3


@dataclass(frozen=True)
class Neutralised:
    """How one player's column is rebuilt from the earlier players in a coalition.

    Attributes:
        player: the player's index.
        earlier: the earlier players it is predicted from (indexes), in order.
        projection: the fitted prediction of its signal from theirs.
        residual: its real signal minus the prediction from the real earlier signals.
        null_residual: the residual's median over the bars where it is available.
        r2: how much of its signal the earlier ones explain.
        group: the index of the first player of its group (the earliest strategy it copies).
        explained_by: (player index, R² alone) of the earlier players that explain it.
    """

    player: int
    earlier: tuple[int, ...]
    projection: Projection
    residual: np.ndarray
    null_residual: float
    r2: float
    group: int
    explained_by: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class EpisodeOutcome:
    """Portfolio value at the first decision and after the last one, in quote currency."""

    value_start: float
    value_end: float
    decisions: int
    equity: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False)


@dataclass(frozen=True)
class EpochGame:
    """v(S) for one epoch: the policy run over the epoch with only the strategies in S real.

    Picklable when `predict` is. Strategies of the data that are not players show their null in
    every evaluation.

    Attributes:
        data: the market, cut to the epoch plus the policy's look-back.
        predict: observation -> action (deterministic).
        env_config: the environment the policy expects (no dropout).
        start: first decision bar in `data`.
        end: final valuation bar in `data` (decisions at start..end-1).
        columns: the data column of each player.
        names: player names, in priority (registration) order.
        metric: "log_return" (per-bar log of value) or "value_change" (per-bar change, quote).
        null: the data with every strategy shown as its null.
        neutralised: the players rebuilt from earlier ones (see the module docstring).
    """

    data: MarketData
    predict: Callable[[np.ndarray], Any]
    env_config: EnvConfig
    start: int
    end: int
    columns: tuple[int, ...]
    names: tuple[str, ...]
    metric: Metric = "log_return"
    null: MarketData | None = None
    neutralised: tuple[Neutralised, ...] = ()

    def __post_init__(self) -> None:
        if self.null is None:
            object.__setattr__(self, "null", null_signals(self.data))

    def __call__(self, coalition: Coalition) -> np.ndarray:
        """Return the agent's per-bar result over the epoch with the coalition real."""
        equity = self.outcome(coalition).equity
        if self.metric == "value_change":
            return np.diff(equity)
        return np.diff(np.log(np.maximum(equity, 1e-12)))

    def value(self, coalition: Coalition) -> float:
        """Return v(coalition): the sum of its per-bar results."""
        return math.fsum(self(coalition).tolist())

    def real(self, coalition: Coalition) -> np.ndarray:
        """Return which strategies of the data show their real signal for a coalition."""
        mask = np.zeros(self.data.n_strategies, dtype=bool)
        for player in coalition:
            mask[self.columns[player]] = True
        return mask

    def data_for(self, coalition: Coalition) -> MarketData:
        """Return the epoch's data as the coalition shows it (see the module docstring)."""
        real = self.real(coalition)
        if real.all():
            return self.data
        assert self.null is not None
        signals = np.where(real, self.data.signals, self.null.signals).astype("float32")
        mask = np.where(real, self.data.mask, self.null.mask)
        shown = np.where(mask, signals.astype("float64"), np.nan)
        differs = {c for c in range(self.data.n_strategies) if not real[c]}
        for item in self.neutralised:
            column = self.columns[item.player]
            if real[column] and not any(self.columns[e] in differs for e in item.earlier):
                continue  # it and every earlier player show their real signal: so does it
            earlier = shown[:, [self.columns[e] for e in item.earlier]]
            residual = item.residual if real[column] else item.null_residual
            rebuilt = item.projection.predict(earlier) + residual
            available = self.data.mask[:, column]
            signals[:, column] = np.where(available, rebuilt, 0.0).astype("float32")
            mask[:, column] = available
            shown[:, column] = np.where(available, signals[:, column], np.nan)
            differs.add(column)
        return replace(self.data, signals=signals, mask=mask)

    def outcome(self, coalition: Coalition) -> EpisodeOutcome:
        """Run the policy over the epoch with the coalition real (the one rollout)."""
        policy = ModelPolicy("epoch", self.predict, self.env_config)
        result = rollout(self.data_for(coalition), policy, self.env_config, self.start, self.end)
        equity = np.asarray(result.equity, dtype="float64")
        bars = self.end - self.start + 1
        if len(equity) < bars:  # ruined: the run stopped; what is left stays flat to the end
            equity = np.concatenate([equity, np.full(bars - len(equity), equity[-1])])
        return EpisodeOutcome(float(equity[0]), float(equity[-1]), result.decisions, equity)

    def partition(self) -> list[list[int]]:
        """Return the players grouped: each neutralised player joins its earliest explainer's
        group; members in priority order (see `agent.rewards.attribution.grouped_exact`)."""
        root = {item.player: item.group for item in self.neutralised}
        groups: dict[int, list[int]] = {}
        for player in range(len(self.names)):
            groups.setdefault(root.get(player, player), []).append(player)
        return list(groups.values())

    def groups(self) -> dict[str, dict[str, Any]]:
        """Return, per neutralised player, its group, R² and the earlier players explaining it."""
        return {
            self.names[item.player]: {
                "group": self.names[item.group],
                "r2": round(item.r2, 6),
                "explained_by": [[self.names[e], round(r2, 6)] for e, r2 in item.explained_by],
            }
            for item in self.neutralised
        }


def null_signals(data: MarketData) -> MarketData:
    """Return `data` with every strategy's signal replaced by its null: its own median.

    For each strategy, every bar where its signal is available shows the median of its
    available values over the whole data; the mask is unchanged (a warm-up stays a warm-up).
    """
    signals = np.array(data.signals, copy=True)
    for column in range(data.n_strategies):
        available = data.mask[:, column]
        if available.any():
            values = data.signals[available, column]
            signals[available, column] = np.sort(values)[(len(values) - 1) // 2]
    return replace(data, signals=signals)


def neutralise(
    data: MarketData,
    columns: Sequence[int],
    *,
    group_r2: float = DEFAULT_GROUP_R2,
    lags: int = DEFAULT_LAGS,
) -> tuple[Neutralised, ...]:
    """Fit, for each player after the first, how well the earlier players explain it.

    A player whose R² on the earlier players (with `lags`) reaches `group_r2` is neutralised
    against them; the others are left as they are. Fitted on `data`'s available bars.
    """
    shown = np.where(data.mask, data.signals.astype("float64"), np.nan)
    group = list(range(len(columns)))
    out = []
    for k in range(1, len(columns)):
        earlier = tuple(range(k))
        target = shown[:, columns[k]]
        regressors = shown[:, [columns[e] for e in earlier]]
        projection = fit(target, regressors, lags)
        if projection is None or projection.r2 < group_r2:
            continue
        alone = explain(target, {str(e): shown[:, columns[e]] for e in earlier}, lags).alone
        explained_by = tuple((int(e), r2) for e, r2 in alone if r2 >= 0.1)
        group[k] = group[explained_by[0][0]] if explained_by else 0
        residual = target - projection.predict(regressors)
        available = np.isfinite(residual)
        null = float(np.median(residual[available])) if available.any() else 0.0
        residual = np.where(available, residual, null)
        r2 = projection.r2
        out.append(Neutralised(k, earlier, projection, residual, null, r2, group[k], explained_by))
    return tuple(out)


def evaluate_epoch(
    policy: Any,
    data: MarketData,
    start: int,
    end: int,
    names: Sequence[str] | None = None,
    *,
    env_config: EnvConfig | None = None,
    metric: Metric = "log_return",
    group_r2: float = DEFAULT_GROUP_R2,
    lags: int = DEFAULT_LAGS,
) -> EpochGame:
    """Return the characteristic function of the epoch of decisions at bars [start, end).

    Args:
        policy: a callable observation -> action, or an object with `predict` and
            `env_config` (a `ModelPolicy` or a loaded model).
        data: the market with every strategy's signal (the columns the policy was trained on).
        start: first decision bar.
        end: the bar after the last decision; its close values the epoch.
        names: the players (strategies of `data`) in registration order, the earliest first;
            default: every strategy, in column order.
        env_config: the environment to run in; default: the policy's, else `EnvConfig()`.
        metric: what v measures (see `EpochGame`).
        group_r2: the R² on earlier players from which a player is neutralised.
        lags: lags of the earlier signals in that regression.

    Raises:
        ValueError: an unknown strategy name, or a window outside the data.
    """
    predict = policy.predict if hasattr(policy, "env_config") else policy
    base = env_config or getattr(policy, "env_config", None) or EnvConfig()
    names = tuple(data.strategy_names if names is None else names)
    unknown = [n for n in names if n not in data.strategy_names]
    if unknown:
        raise ValueError(f"strategies {unknown} are not in the data ({list(data.strategy_names)})")
    lookback = base.lookback_bars
    if not (lookback - 1 <= start < end <= data.bars - 1):
        raise ValueError(
            f"epoch window [{start}, {end}) must lie within [{lookback - 1}, {data.bars - 1}] "
            f"(look-back {lookback}, {data.bars} bars)"
        )
    offset = start - (lookback - 1)
    window = data.window(offset, end + 1)
    columns = tuple(data.strategy_names.index(n) for n in names)
    config = replace(base, first_bar=lookback - 1, strategy_dropout=0.0)
    return EpochGame(
        null=null_signals(data).window(offset, end + 1),
        data=window,
        predict=predict,
        env_config=config,
        start=start - offset,
        end=end - offset,
        columns=columns,
        names=names,
        metric=metric,
        neutralised=neutralise(window, columns, group_r2=group_r2, lags=lags),
    )
