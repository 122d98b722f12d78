"""The decision as data: where the records start, and what one bar's decision records.

`Genesis` is fixed at the first start of a data directory (the market, the history's last bar,
the starting portfolio and the pool the records start from) and checked at every later start,
so a configuration change that would make the records meaningless is refused. `decide_outcome`
is the bar's trade in the pool mirror, as the environment does it (couple, then rebalance), as a
`BarOutcome`: what the intent stores (`to_json_data`), the chain replays and the next bar
continues from. `decision_fields` is the decision record the outcome carries; `fields_to_json`
and `fields_from_json` store and rebuild it identically (so recovery appends exactly the record
that was decided).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from agent.config import Settings
from agent.errors import ConfigError, DataError
from agent.market.schema import format_time_ms
from agent.service.feeds import MarketFeed
from agent.store import Store

if TYPE_CHECKING:
    from agent.audit.record import DecisionFields
    from agent.dex.amm import Token
    from agent.dex.pool import TradeSide
    from agent.service.ledger import TickRow


@dataclass(frozen=True)
class Genesis:
    """What the service's records start from (fixed at the first start of a data directory)."""

    market: str
    after_ms: int
    first_index: int
    initial_quote: int
    pool: tuple[int, int, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "market": self.market,
            "after_ms": self.after_ms,
            "first_index": self.first_index,
            "initial_quote": self.initial_quote,
            "pool": list(self.pool),
        }


def expected_genesis_pool(settings: Settings) -> tuple[int, int, int]:
    """Return the reserves of a freshly deployed pool (`deploy_all`'s seed at its default price)."""
    from agent.chain.deploy import DEFAULT_INITIAL_PRICE
    from agent.dex.pool import MarketCoupledPool, PoolConfig

    pool = MarketCoupledPool(PoolConfig.from_settings(settings.dex))
    state = pool.reset(DEFAULT_INITIAL_PRICE)
    return state.base, state.quote, state.total_supply


def initial_quote_units(settings: Settings) -> int:
    """Return the starting portfolio in quote units (as `TradingEnv.reset`)."""
    from agent.env.spec import QUOTE_SCALE

    return round(settings.agent.initial_value_quote * QUOTE_SCALE)


def ensure_genesis(
    *, store: Store, settings: Settings, feed: MarketFeed, event: Callable[..., None]
) -> Genesis:
    """Store the history and record what the records start from, once; check it after.

    Raises:
        DataError: the feed has no history.
        ConfigError: too little history, or the configuration changed what the records
            started from (market, starting portfolio, pool).
    """
    from agent.service import ledger  # here: the ledger imports this module (`BarOutcome`)

    pool = expected_genesis_pool(settings)
    initial = initial_quote_units(settings)
    market = str(feed.key)
    found = ledger.get_state(store, "genesis")
    if found is None:
        history = feed.history(settings.service.start_bar)
        if history.empty:
            raise DataError(f"no history for {market}: the feed returned no candles")
        store.write_candles(feed.key, history)
        write_hidden(store, feed, history["open_time"].to_numpy(dtype="int64"))
        stored = len(store.read_candles(feed.key))
        from agent.env.trading_env import EnvConfig

        first_bar = EnvConfig.from_settings(settings).first_bar
        if stored <= first_bar:
            raise ConfigError(
                f"service.start_bar gives {stored} bars of history; the first decision "
                f"needs more than {first_bar} (the feature warm-up and look-back)"
            )
        genesis = Genesis(market, int(history["open_time"].iloc[-1]), stored, initial, pool)
        ledger.put_state(store, "genesis", genesis.as_dict())
        event(
            "genesis",
            market=market,
            history_bars=stored,
            first_decision_after=format_time_ms(genesis.after_ms),
        )
        return genesis
    genesis = Genesis(
        found["market"],
        int(found["after_ms"]),
        int(found["first_index"]),
        int(found["initial_quote"]),
        (int(found["pool"][0]), int(found["pool"][1]), int(found["pool"][2])),
    )
    problems = []
    if genesis.market != market:
        problems.append(f"market {genesis.market} (now {market})")
    if genesis.initial_quote != initial:
        problems.append(f"agent.initial_value_quote {genesis.initial_quote} units (now {initial})")
    if genesis.pool != pool:
        problems.append("dex.liquidity_quote / dex.fee_bps (the genesis pool differs)")
    if problems:
        raise ConfigError(
            f"the service in {settings.data.dir} was started with another "
            f"{'; '.join(problems)}: its records cannot continue under this configuration; "
            "restore it, or use a fresh data.dir"
        )
    return genesis


def write_hidden(store: Store, feed: MarketFeed, open_times: Any) -> None:
    """Store the feed's hidden series (the synthetic market's planted one) at these bars."""
    for name, values in feed.hidden(open_times).items():
        keep = ~pd.isna(values)
        if keep.any():
            store.write_hidden_series(feed.key, name, open_times[keep], values[keep])


# --- one bar ------------------------------------------------------------------------------------
PoolReserves = tuple[int, int, int]
"""A pool state: (base reserve, quote reserve, LP token supply), in token units."""


@dataclass(frozen=True)
class BarArbitrage:
    """The operator's swap that couples the pool mirror to the bar's price."""

    token_in: Token
    amount_in: int
    amount_out: int

    def to_json_data(self) -> dict[str, Any]:
        """Return the swap as JSON data (exact integers)."""
        return {
            "token_in": self.token_in,
            "amount_in": self.amount_in,
            "amount_out": self.amount_out,
        }

    @classmethod
    def from_json_data(cls, data: Mapping[str, Any]) -> BarArbitrage:
        """Rebuild the swap from `to_json_data` output."""
        return cls(data["token_in"], int(data["amount_in"]), int(data["amount_out"]))


@dataclass(frozen=True)
class BarTrade:
    """The trader's swap towards the target exposure (side 'none': no swap, zero amounts)."""

    side: TradeSide
    amount_in: int
    amount_out: int
    gas_quote: int

    def to_json_data(self) -> dict[str, Any]:
        """Return the trade as JSON data (exact integers)."""
        return {
            "side": self.side,
            "amount_in": self.amount_in,
            "amount_out": self.amount_out,
            "gas_quote": self.gas_quote,
        }

    @classmethod
    def from_json_data(cls, data: Mapping[str, Any]) -> BarTrade:
        """Rebuild the trade from `to_json_data` output."""
        return cls(
            data["side"], int(data["amount_in"]), int(data["amount_out"]), int(data["gas_quote"])
        )


@dataclass(frozen=True)
class BarOutcome:
    """One bar's decision and everything the chain must replay and the next bar continues from.

    The ledger stores it as the bar's intent (`to_json_data`: the layout the stored rows have
    always had; the triggers behind `ledger.tick_counts` read `$.trade.side` from it).

    Attributes:
        price: the bar's close, the price the pool is coupled to.
        target: the live model's target exposure.
        pool_before: the pool mirror before the bar.
        pool_coupled: the pool after the operator's arbitrage to `price`.
        pool_after: the pool after the trader's swap.
        arbitrage: the operator's swap, or None when the pool was already at `price`.
        arbitrage_flow: the operator's cumulative (base, quote) flow from arbitrage, this bar's
            included.
        trade: the trader's swap.
        balances: the trader's (base, quote) after the bar, all gas deducted from quote.
        gas_total: the gas paid so far, in quote units.
        value_quote: the trader's portfolio value after the bar, at `price`.
        exposure_after: the trader's exposure after the bar, at `price`.
        exposure_before: the trader's exposure before the trade, at `price` (what the model
            observed).
        fields: the decision record (`decision_fields`); None until the service attaches it.
        observation: the float32 observation the model decided on, as Python floats (stored
            under "observation" only when present; rows of older versions have none). Reward
            epochs of the service are attributed on it (`agent.rewards.recorded`).
    """

    price: float
    target: float
    pool_before: PoolReserves
    pool_coupled: PoolReserves
    pool_after: PoolReserves
    arbitrage: BarArbitrage | None
    arbitrage_flow: tuple[int, int]
    trade: BarTrade
    balances: tuple[int, int]
    gas_total: int
    value_quote: float
    exposure_after: float
    exposure_before: float
    fields: DecisionFields | None = None
    observation: tuple[float, ...] | None = None

    def to_json_data(self) -> dict[str, Any]:
        """Return the outcome as JSON data (pool states and pairs as lists, exact integers)."""
        data: dict[str, Any] = {
            "price": self.price,
            "target": self.target,
            "pool_before": list(self.pool_before),
            "pool_coupled": list(self.pool_coupled),
            "pool_after": list(self.pool_after),
            "arbitrage": None if self.arbitrage is None else self.arbitrage.to_json_data(),
            "arbitrage_flow": list(self.arbitrage_flow),
            "trade": self.trade.to_json_data(),
            "balances": list(self.balances),
            "gas_total": self.gas_total,
            "value_quote": self.value_quote,
            "exposure_after": self.exposure_after,
            "exposure_before": self.exposure_before,
        }
        if self.fields is not None:
            data["fields"] = fields_to_json(self.fields)
        if self.observation is not None:
            data["observation"] = list(self.observation)
        return data

    @classmethod
    def from_json_data(cls, data: Mapping[str, Any]) -> BarOutcome:
        """Rebuild the outcome from `to_json_data` output (a stored intent)."""
        arbitrage, fields = data["arbitrage"], data.get("fields")
        observation = data.get("observation")
        return cls(
            price=float(data["price"]),
            target=float(data["target"]),
            pool_before=_reserves(data["pool_before"]),
            pool_coupled=_reserves(data["pool_coupled"]),
            pool_after=_reserves(data["pool_after"]),
            arbitrage=None if arbitrage is None else BarArbitrage.from_json_data(arbitrage),
            arbitrage_flow=_pair(data["arbitrage_flow"]),
            trade=BarTrade.from_json_data(data["trade"]),
            balances=_pair(data["balances"]),
            gas_total=int(data["gas_total"]),
            value_quote=float(data["value_quote"]),
            exposure_after=float(data["exposure_after"]),
            exposure_before=float(data["exposure_before"]),
            fields=None if fields is None else fields_from_json(fields),
            observation=None if observation is None else tuple(float(v) for v in observation),
        )


def _reserves(values: Any) -> PoolReserves:
    base, quote, supply = values
    return int(base), int(quote), int(supply)


def _pair(values: Any) -> tuple[int, int]:
    first, second = values
    return int(first), int(second)


def carried_state(previous: TickRow | None, genesis: Genesis) -> dict[str, Any]:
    """Return the portfolio and pool the next bar starts from (the last decision's outcome)."""
    if previous is None or previous.outcome is None:
        return {
            "base": 0,
            "quote": genesis.initial_quote,
            "pool": list(genesis.pool),
            "gas_total": 0,
            "arbitrage_flow": [0, 0],
        }
    out = previous.outcome
    return {
        "base": out.balances[0],
        "quote": out.balances[1],
        "pool": list(out.pool_after),
        "gas_total": out.gas_total,
        "arbitrage_flow": list(out.arbitrage_flow),
    }


def decide_outcome(pool: Any, state: dict[str, Any], price: float, target: float) -> BarOutcome:
    """Couple the mirror pool to the bar's price and trade to `target`; return the outcome.

    The outcome has no decision record yet (`fields`): the record names the trade, so the
    service attaches it after (`dataclasses.replace(outcome, fields=decision_fields(...))`).
    """
    from agent.dex.amm import PoolState
    from agent.env.rollout import execute_target
    from agent.env.spec import exposure, portfolio_value

    before = PoolState(*(int(x) for x in state["pool"]))
    exposure_before = exposure(state["base"], state["quote"], price)
    pool.state = before
    fill = execute_target(pool, state["base"], state["quote"], target, price)
    arbitrage, coupled, trade, after = (
        fill.arbitrage,
        fill.pool_coupled,
        fill.trade,
        fill.pool_after,
    )
    flow_base, flow_quote = state["arbitrage_flow"]
    arb = None
    if arbitrage is not None:
        arb = BarArbitrage(arbitrage.token_in, arbitrage.amount_in, arbitrage.amount_out)
        if arbitrage.token_in == "quote":
            flow_base, flow_quote = (
                flow_base + arbitrage.amount_out,
                flow_quote - arbitrage.amount_in,
            )
        else:
            flow_base, flow_quote = (
                flow_base - arbitrage.amount_in,
                flow_quote + arbitrage.amount_out,
            )
    base, quote = trade.base_balance, trade.quote_balance
    return BarOutcome(
        price=price,
        target=target,
        pool_before=(before.base, before.quote, before.total_supply),
        pool_coupled=(coupled.base, coupled.quote, coupled.total_supply),
        pool_after=(after.base, after.quote, after.total_supply),
        arbitrage=arb,
        arbitrage_flow=(flow_base, flow_quote),
        trade=BarTrade(trade.side, trade.amount_in, trade.amount_out, trade.gas_quote),
        balances=(base, quote),
        gas_total=int(state["gas_total"]) + trade.gas_quote,
        value_quote=portfolio_value(base, quote, price),
        exposure_after=exposure(base, quote, price),
        exposure_before=exposure_before,
    )


def decision_fields(
    *,
    bar_ms: int,
    market: str,
    model_id: str,
    config_hash: str,
    observation: Any,
    names: Any,
    signals: Any,
    masks: Any,
    target: float,
    trade: BarTrade,
    fee_bps: int,
    gas_per_swap: int,
) -> DecisionFields:
    """Return the decision record's fields (what the intent stores with the outcome)."""
    from agent.audit.record import DecisionFields, ExecutedTrade, observation_digest

    traded = trade.side != "none"
    return DecisionFields(
        bar_time_ms=bar_ms,
        market=market,
        model_id=model_id,
        config_hash=config_hash,
        observation_digest=observation_digest(observation),
        strategy_names=tuple(str(n) for n in names),
        signals=tuple(float(v) if bool(m) else 0.0 for v, m in zip(signals, masks, strict=True)),
        masks=tuple(bool(m) for m in masks),
        target_exposure=float(target),
        trade=ExecutedTrade(
            side=trade.side,
            amount_in=trade.amount_in,
            amount_out=trade.amount_out,
            fee=trade.amount_in * fee_bps // 10_000,
            gas_used=gas_per_swap if traded else 0,
        ),
    )


def fields_to_json(fields: DecisionFields) -> dict[str, Any]:
    """Return the decision record's fields as JSON data (what the intent stores)."""
    return {
        "bar_time_ms": fields.bar_time_ms,
        "market": fields.market,
        "model_id": fields.model_id,
        "config_hash": fields.config_hash,
        "observation_digest": fields.observation_digest,
        "strategy_names": list(fields.strategy_names),
        "signals": list(fields.signals),
        "masks": list(fields.masks),
        "target_exposure": fields.target_exposure,
        "trade": fields.trade.to_json_data(),
    }


def fields_from_json(data: Mapping[str, Any]) -> DecisionFields:
    """Rebuild `DecisionFields` from `fields_to_json` output."""
    from agent.audit.record import DecisionFields, ExecutedTrade

    return DecisionFields(
        bar_time_ms=int(data["bar_time_ms"]),
        market=data["market"],
        model_id=data["model_id"],
        config_hash=data["config_hash"],
        observation_digest=data["observation_digest"],
        strategy_names=tuple(data["strategy_names"]),
        signals=tuple(float(v) for v in data["signals"]),
        masks=tuple(bool(m) for m in data["masks"]),
        target_exposure=float(data["target_exposure"]),
        trade=ExecutedTrade.from_json_data(data["trade"]),
    )
