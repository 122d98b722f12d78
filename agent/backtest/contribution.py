"""What a strategy would add to the agent: its masked re-run contribution on the validation window.

Measured exactly as a reward epoch measures what a strategy is paid for
(`agent.rewards.epochs.measure_window`): the model re-run over the validation window of its
data set (the window the promotion gate judges on) with strategies shown as their nulls, the
players in registration order, later ones neutralised against earlier ones, their Shapley
values with a block-bootstrap standard error, and the significance verdict payouts apply
(`agent.rewards.scoring.score_epoch`). The model is the live one, or the one named; a model
that does not observe the strategy cannot measure it, unless a probe model is trained that
does (the model's strategies plus this one, the configured training settings, one seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.compute import Backend
from agent.config import Settings
from agent.errors import ModelNotFound
from agent.plugins.discovery import DiscoveredStrategy
from agent.rewards.scoring import INACTIVE, NEGATIVE, NOT_SIGNIFICANT, QUARANTINED, SIGNIFICANT
from agent.store import Store

NO_LIVE_MODEL = (
    "not estimated: there is no live model to measure it with: train and promote one "
    "(agora train, agora models promote), or name one with --model ID"
)


@dataclass(frozen=True)
class Contribution:
    """A strategy's estimated contribution to the agent, or why there is none.

    Attributes:
        note: how to read the estimate, or why it was not made.
        value: its Shapley value over the window, in the game's metric (log return).
        se: the value's block-bootstrap standard error (plus Monte-Carlo error beyond
            `rewards.shapley_exact_max_players` players).
        z: value / se, as payouts compute it.
        significant: whether z exceeds `rewards.significance` (what payouts require).
        verdict: the payout verdict (significant, not significant, negative, inactive,
            quarantined).
        model_id: the model re-run; `probe` when it was trained for this estimate.
        window: the validation window's bars and series.
        group: the earlier strategies it was neutralised against, if it was (the game's
            `groups()`), else None.
    """

    note: str
    value: float | None = None
    se: float | None = None
    z: float | None = None
    significant: bool | None = None
    verdict: str | None = None
    model_id: str | None = None
    probe: bool = False
    window: dict[str, Any] | None = None
    group: dict[str, Any] | None = None
    players: tuple[str, ...] = ()
    method: str | None = None

    @property
    def estimated(self) -> bool:
        return self.value is not None

    def as_dict(self) -> dict[str, Any] | None:
        """Return the estimate as JSON-ready data (None when not estimated)."""
        if not self.estimated:
            return None
        return {
            "value": self.value,
            "se": self.se,
            "z": self.z,
            "significant": self.significant,
            "verdict": self.verdict,
            "model_id": self.model_id,
            "probe": self.probe,
            "window": self.window,
            "group": self.group,
            "players": list(self.players),
            "method": self.method,
        }


def estimate_contribution(
    settings: Settings,
    store: Store | None,
    item: DiscoveredStrategy,
    *,
    model: str = "live",
    probe_timesteps: int = 0,
    compute: Backend | None = None,
) -> Contribution:
    """Estimate what `item` would be paid for: its contribution on the validation window.

    Args:
        settings: the configuration (`rewards` for the measurement, `agent` for a probe).
        store: the database holding the models and the market (None: nothing to measure).
        item: the strategy, loaded (its column name is its spec or plugin name).
        model: the model to re-run: `live` or a model id.
        probe_timesteps: when the model does not observe the strategy, train a probe model
            that does for this many timesteps (0: say so instead).
        compute: where the coalitions run (default: `rewards.workers` local processes).

    Raises:
        ModelNotFound: a named model does not exist.
        ModelError: the model cannot be loaded, or the probe's training failed.
        DataError: the model's series has no candles, or too few for the split.
    """
    from agent.learn.policy import load_policy

    if store is None:
        return Contribution(NO_LIVE_MODEL)
    try:
        loaded = load_policy(store, model)
    except ModelNotFound:
        if model != "live":
            raise
        return Contribution(NO_LIVE_MODEL)
    probe = False
    if item.name not in loaded.spec.strategies:
        observed = ", ".join(loaded.spec.strategies)
        if probe_timesteps <= 0:
            return Contribution(
                f"not estimated: model {loaded.model_id[:12]} does not observe {item.name} "
                f"(it observes {observed}): pass --probe-timesteps N to train a probe model "
                "that does"
            )
        loaded = load_policy(store, _train_probe(settings, store, loaded, item, probe_timesteps))
        probe = True
    return _measure(settings, store, loaded, item, probe, compute)


def _items(settings: Settings, specs: Sequence[str], item: DiscoveredStrategy) -> list[Any]:
    """Resolve a model's strategy specs, with `item` itself in its own column."""
    from agent.plugins.resolve import resolve_strategies

    others = iter(resolve_strategies([s for s in specs if s != item.name], settings))
    return [item if spec == item.name else next(others) for spec in specs]


def _train_probe(
    settings: Settings, store: Store, loaded: Any, item: DiscoveredStrategy, timesteps: int
) -> str:
    """Train one seed observing the model's strategies plus `item`; return its (new) id."""
    from agent.learn.dataset import load_dataset
    from agent.learn.train import train
    from agent.market.data import default_key

    key = loaded.record.key if loaded.record.series else default_key(settings)
    specs: list[Any] = [*loaded.spec.strategies, item]
    dataset = load_dataset(store, settings, key, strategies=specs)
    report = train(
        settings,
        store,
        dataset=dataset,
        algorithm=loaded.record.algorithm,
        seeds=1,
        timesteps=timesteps,
    )
    return str(report.runs[0].model_id)


def _measure(
    settings: Settings,
    store: Store,
    loaded: Any,
    item: DiscoveredStrategy,
    probe: bool,
    compute: Backend | None = None,
) -> Contribution:
    from agent.env.trading_env import EnvConfig
    from agent.learn.dataset import split_windows
    from agent.rewards.epochs import measure_window
    from agent.rewards.inputs import load_inputs

    rewards = settings.rewards
    items = _items(settings, loaded.spec.strategies, item)
    inputs = load_inputs(settings, store, loaded.model_id, policy=loaded, strategies=items)
    first_bar = EnvConfig.from_settings(settings).first_bar
    window = split_windows(inputs.data.open_time, settings.agent.split, first_bar=first_bar)[
        "validation"
    ]
    data = inputs.data.window(0, window.end)  # nothing after the window is read
    measured = measure_window(
        inputs.policy,
        data,
        window.start,
        window.end - 1,
        inputs.names,
        rewards,
        env_config=inputs.env_config,
        quarantined=inputs.quarantined,
        compute=compute,
    )
    (score,) = [s for s in measured.scores if s.name == item.name]
    return Contribution(
        note=_reading(score.verdict, score.z, settings),
        value=score.contribution,
        se=score.std_error,
        z=score.z,
        significant=score.verdict == SIGNIFICANT,
        verdict=score.verdict,
        model_id=loaded.model_id,
        probe=probe,
        window={
            **window.as_dict(),
            "series": str(inputs.key),
            "decisions": window.end - 1 - window.start,
        },
        group=measured.game.groups().get(item.name),
        players=tuple(measured.active),
        method=measured.attribution.method,
    )


def _reading(verdict: str, z: float, settings: Settings) -> str:
    """How payouts would read this one window's estimate."""
    rewards = settings.rewards
    s = rewards.significance
    readings = {
        SIGNIFICANT: f"would be paid: z {z:.2f} > {s:g}",
        NOT_SIGNIFICANT: f"not distinguishable from zero: z {z:.2f} ≤ {s:g}",
        NEGATIVE: "negative: the agent does better without it; it would not be paid",
        INACTIVE: "inactive: no signal in the validation window",
        QUARANTINED: "quarantined: caught looking ahead; it would never be paid",
    }
    return (
        f"{readings[verdict]}. One window, no history: payouts accumulate a strategy's "
        f"contributions over epochs of {rewards.epoch_bars} bars, halving their weight every "
        f"{rewards.decay_half_life_epochs:g} epochs, and pay it once the accumulated z exceeds "
        f"{s:g}"
    )
