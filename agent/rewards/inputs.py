"""What a reward epoch is measured on: the policy, the market as the agent saw it, the players.

`load_inputs` loads a registered model (default: the live one) through the one loader and the
market it trades through the plugin boundary (signals recomputed from the stored candles,
look-ahead checked; quarantined strategies named); `registration_order` puts the strategies in
the order their authors registered them (a later strategy is credited only for what earlier
ones cannot predict); `inputs_for_epoch` swaps in the live service's recorded observations for
an epoch it decided (`agent.rewards.recorded`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agent.config import Settings
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import DataError
from agent.market.schema import SeriesKey
from agent.rewards.epochs import HISTORY, RECORDED
from agent.store import Store


@dataclass(frozen=True)
class EpochInputs:
    """What an epoch is measured on: the policy, the market, the strategies' payout metadata.

    Attributes:
        policy: the model's numpy policy (observation -> action).
        data: the stored market with every strategy the model observes (bar 0 = first candle).
        metadata: each column's declared payout address.
        registry_names: each column's strategy name in the StrategyRegistry (a column is a
            strategy spec such as `noise:seed=3`; its plugin is `noise`).
        model_id: the model's id.
        env_config: the environment the model observes, with the configured costs.
        quarantined: columns whose strategy is quarantined (caught looking ahead): unpaid.
        names: the columns in registration order, the earliest first (`registration_order`).
        source: where the signals came from (`recorded` or `history`).
        first_bar: the first bar the agent decided on (recorded epochs), else None.
        spec: the model's policy spec (what it observes).
        key: the series the market is.
        source_detail: for recorded signals: bars decided, skipped and verified.
    """

    policy: Any
    data: MarketData
    metadata: Mapping[str, str | None]
    registry_names: Mapping[str, str]
    model_id: str
    env_config: EnvConfig
    quarantined: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()
    source: str = HISTORY
    first_bar: int | None = None
    spec: Any = None
    key: SeriesKey | None = None
    source_detail: Mapping[str, Any] | None = None

    def run_arguments(self) -> dict[str, Any]:
        """Return these inputs as `run_epoch`'s keyword arguments."""
        return {
            "policy": self.policy,
            "data": self.data,
            "metadata": self.metadata,
            "registry_names": self.registry_names,
            "model_id": self.model_id,
            "env_config": self.env_config,
            "quarantined": self.quarantined,
            "names": self.names or None,
            "source": self.source,
            "first_bar": self.first_bar,
            "source_detail": self.source_detail,
        }


def registration_order(store: Store, items: Sequence[Any]) -> tuple[str, ...]:
    """Return the strategy columns in the order their strategies were registered.

    Shipped strategies (and test fixtures) come first, in the given order; then registered
    plugins, by the time their name was first registered in this store; then plugins never
    registered here. A later strategy is credited only for what the earlier ones cannot
    predict (`agent.rewards.game`), so the order decides who owns a shared signal.
    """
    from agent.plugins.signals import as_discovered

    first: dict[str, int] = {}
    for name, created in store.db.execute(
        "SELECT name, MIN(created_ms) FROM strategy_registrations "
        "WHERE status IN ('registered', 'installed') GROUP BY name"
    ).fetchall():
        first[str(name)] = int(created)

    def key(position: int) -> tuple[int, int, int]:
        item = items[position]
        found = as_discovered(item)
        plugin = item.info.name if getattr(item, "info", None) else found.name
        if found.trusted and plugin not in first:
            return (0, 0, position)
        if plugin in first:
            return (1, first[plugin], position)
        return (2, 0, position)

    return tuple(items[i].name for i in sorted(range(len(items)), key=key))


def load_inputs(
    settings: Settings,
    store: Store,
    model_id: str = "live",
    *,
    policy: Any = None,
    strategies: Sequence[Any] | None = None,
    key: SeriesKey | None = None,
) -> EpochInputs:
    """Load a registered model (default: the live one) and the market it trades.

    The service passes the policy and strategies it already holds; the command line loads
    them through the one loader (`agent.learn.policy.load_policy`) and the one resolver.

    Raises:
        ModelNotFound: no live model, or no model with that id.
        ModelError: the model cannot be loaded.
    """
    from agent.learn.policy import load_policy
    from agent.market.data import default_key
    from agent.plugins.lookahead import QUARANTINED, quarantined_names
    from agent.plugins.market_data import build_market_data
    from agent.plugins.resolve import resolve_strategies
    from agent.plugins.signals import as_discovered

    loaded = policy if policy is not None else load_policy(store, model_id)
    if key is None:
        key = loaded.record.key if loaded.record.series else default_key(settings)
    items = (
        list(strategies)
        if strategies is not None
        else resolve_strategies(loaded.spec.strategies, settings)
    )
    candles = store.read_candles(key)
    if candles.empty:
        raise DataError(f"no candles stored for {key}: nothing to measure the epoch on")
    data, reasons = build_market_data(
        candles, items, key=key, store=store, settings=settings.strategies, source="rewards"
    )
    quarantined = {n for n, r in reasons.items() if r.startswith(QUARANTINED)}
    quarantined |= quarantined_names(store, [as_discovered(item) for item in items])
    infos = {item.name: item.info for item in items}
    return EpochInputs(
        policy=loaded.predict,
        data=data,
        metadata={n: (i.payout_address if i else None) for n, i in infos.items()},
        registry_names={n: (i.name if i else n) for n, i in infos.items()},
        model_id=loaded.model_id,
        env_config=EnvConfig.from_settings(settings).for_spec(loaded.spec),
        quarantined=frozenset(quarantined),
        names=registration_order(store, items),
        spec=loaded.spec,
        key=key,
    )


def inputs_for_epoch(inputs: EpochInputs, store: Store, epoch: int, epoch_bars: int) -> EpochInputs:
    """Return the inputs to measure `epoch` on: what the agent saw, where the service decided it.

    When the live service decided bars of this epoch, the market is rebuilt from its recorded
    observations and prices (`agent.rewards.recorded`), each checked against its decision
    record: later changes to the stored candles or to a plugin's code change nothing. Otherwise
    (a backtest-only epoch) the inputs are the history, recomputed and look-ahead checked.

    Raises:
        AuditError: a recorded observation differs from its decision record.
    """
    from agent.rewards.recorded import recorded_market

    end = (epoch + 1) * epoch_bars
    if inputs.spec is None or inputs.key is None or end > inputs.data.bars - 1:
        return inputs  # an incomplete epoch: `compute_epoch` says so
    recorded = recorded_market(
        store, str(inputs.key), inputs.data.open_time, end, inputs.spec, inputs.data.strategy_names
    )
    if recorded is None:
        return inputs
    detail = {
        "decided": recorded.decided,
        "skipped": list(recorded.skipped),
        "verified": recorded.verified,
        "first_bar": recorded.first_bar,
    }
    return replace(
        inputs,
        data=recorded.data,
        source=RECORDED,
        first_bar=recorded.first_bar,
        source_detail=detail,
    )
