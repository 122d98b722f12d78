"""The decision as data: where the records start, and what one bar's decision records.

`Genesis` is fixed at the first start of a data directory (the market, the history's last bar,
the starting portfolio and the pool the records start from) and checked at every later start,
so a configuration change that would make the records meaningless is refused. `decide_outcome`
is the bar's trade in the pool mirror, as the environment does it (couple, then rebalance);
`decision_fields` is the decision record the intent stores, `fields_from_json` rebuilds it
identically from the stored JSON (so recovery appends exactly the record that was decided).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from agent.config import Settings
from agent.errors import ConfigError, DataError
from agent.market.schema import format_time_ms
from agent.service import ledger
from agent.service.feeds import MarketFeed
from agent.store import Store


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
def carried_state(previous: ledger.TickRow | None, genesis: Genesis) -> dict[str, Any]:
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
        "base": int(out["balances"][0]),
        "quote": int(out["balances"][1]),
        "pool": [int(x) for x in out["pool_after"]],
        "gas_total": int(out["gas_total"]),
        "arbitrage_flow": [int(x) for x in out["arbitrage_flow"]],
    }


def decide_outcome(pool: Any, state: dict[str, Any], price: float, target: float) -> dict[str, Any]:
    """Couple the mirror pool to the bar's price and trade to `target`; return the outcome.

    The outcome is everything the chain must replay and the next bar continues from: the pool
    before, after the arbitrage and after the trade; the arbitrage swap and the operator's
    cumulative flow from it; the trade; the trader's balances (gas deducted) and total gas.
    """
    from agent.dex.amm import PoolState
    from agent.env.rollout import execute_target
    from agent.env.spec import exposure, portfolio_value

    before = PoolState(*(int(x) for x in state["pool"]))
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
        arb = {
            "token_in": arbitrage.token_in,
            "amount_in": arbitrage.amount_in,
            "amount_out": arbitrage.amount_out,
        }
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
    return {
        "price": price,
        "target": target,
        "pool_before": [before.base, before.quote, before.total_supply],
        "pool_coupled": [coupled.base, coupled.quote, coupled.total_supply],
        "pool_after": [after.base, after.quote, after.total_supply],
        "arbitrage": arb,
        "arbitrage_flow": [flow_base, flow_quote],
        "trade": {
            "side": trade.side,
            "amount_in": trade.amount_in,
            "amount_out": trade.amount_out,
            "gas_quote": trade.gas_quote,
        },
        "balances": [base, quote],
        "gas_total": int(state["gas_total"]) + trade.gas_quote,
        "value_quote": portfolio_value(base, quote, price),
        "exposure_after": exposure(base, quote, price),
    }


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
    trade: dict[str, Any],
    fee_bps: int,
    gas_per_swap: int,
) -> dict[str, Any]:
    """Return the decision record's fields as JSON data (what the intent stores)."""
    from agent.audit.record import ZERO_HASH, observation_digest

    traded = trade["side"] != "none"
    return {
        "bar_time_ms": bar_ms,
        "market": market,
        "model_id": model_id,
        "config_hash": config_hash,
        "observation_digest": observation_digest(observation),
        "strategy_names": [str(n) for n in names],
        "signals": [float(v) if bool(m) else 0.0 for v, m in zip(signals, masks, strict=True)],
        "masks": [bool(m) for m in masks],
        "target_exposure": float(target),
        "trade": {
            "side": trade["side"],
            "amount_in": str(trade["amount_in"]),
            "amount_out": str(trade["amount_out"]),
            "fee": str(trade["amount_in"] * fee_bps // 10_000),
            "gas_used": gas_per_swap if traded else 0,
            "tx_hash": ZERO_HASH,
        },
    }


def fields_from_json(data: dict[str, Any]) -> Any:
    """Rebuild `DecisionFields` from `decision_fields` output."""
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
