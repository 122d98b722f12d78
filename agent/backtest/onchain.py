"""`--onchain` backtests: every trade of a target path sent as a transaction through the pool.

The off-chain mirror (`MarketCoupledPool`) still decides each trade; `OnChainExecutor` sends it
and checks that the chain paid exactly what the mirror computed, and the pool is arbitraged to
each bar's price on both sides, so the run's results equal the off-chain run to the wei. Every
decision hash is appended to the DecisionLog contract in batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.backtest.engine import (
    BASE_SCALE,
    QUOTE_SCALE,
    BacktestConfig,
    BacktestResult,
    Progress,
    TargetPolicy,
    _costs,
    _Recorder,
)
from agent.dex.pool import MarketCoupledPool
from agent.env.trading_env import MarketData
from agent.errors import ChainError

_LOG_BATCH = 100


@dataclass
class OnChainVenue:
    """A fresh pool on a chain, a funded trader and the DecisionLog, for `run_onchain`.

    Attributes:
        executor: trades as `trader` through the deployed pool (see agent.dex.executor).
        mint_quote: mints quote tokens to an account (the operator owns the market tokens).
        record_hashes: appends decision hashes to the DecisionLog; returns the on-chain head.
    """

    executor: Any
    mint_quote: Callable[[str, int], None]
    record_hashes: Callable[[list[bytes]], str] | None = None


def run_onchain(
    data: MarketData,
    policy: TargetPolicy,
    config: BacktestConfig,
    venue: OnChainVenue,
    *,
    progress: Progress | None = None,
) -> BacktestResult:
    """Run a target-path policy with every trade sent as a transaction through the pool.

    The off-chain mirror decides each trade; the executor sends it and checks the chain paid
    exactly what the mirror computed. Before every decision the pool is arbitraged to the bar's
    price on both sides; every swap checks the chain's reserves after it against the mirror's,
    as does a final comparison, so any divergence is caught to the wei. At the end the trader's
    balances must equal the mirror's (the simulated gas, paid in quote off-chain, is paid in
    the native token on-chain and is added back for the comparison).

    Raises:
        ChainError: the chain and the mirror disagree anywhere ("parity broken"), or the pool
            does not start at the mirror's reserves (the venue's pool must be fresh).
    """
    start, end = config.window(data)
    close = np.asarray(data.close, dtype="float64").tolist()
    times = np.asarray(data.open_time, dtype="int64").tolist()
    targets = np.clip(np.asarray(policy.targets, dtype="float64"), 0.0, 1.0).tolist()
    executor = venue.executor
    pool = MarketCoupledPool(config.pool)
    pool.reset(close[start])
    _check_reserves(executor, pool, "at the start (is the pool fresh?)")
    base0, quote0 = executor.balances()
    initial = config.initial_value_quote
    base, quote = 0, round(initial * QUOTE_SCALE)
    venue.mint_quote(executor.trader, quote)
    record = _Recorder(True)
    gas_paid_units = 0
    gas_used = 0
    transactions = 0
    total = end - start
    for t in range(start, end):
        price = close[t]
        trade = pool.trade_to_exposure(base, quote, targets[t], price)
        if trade.side != "none":
            receipt = executor.execute(trade, expected_reserves_after=pool.state)
            gas_used += receipt.gas_used
            gas_paid_units += trade.gas_quote
            transactions += 1
        base_before = base
        base, quote = trade.base_balance, trade.quote_balance
        next_price = close[t + 1]
        value_after = base / BASE_SCALE * next_price + quote / QUOTE_SCALE
        pool.couple(next_price)
        if executor.arbitrage_to_price(next_price) is not None:
            transactions += 1
        record.decision(
            times[t],
            targets[t],
            trade.side,
            _costs(trade),
            (base, quote),
            base_before,
            price,
            value_after,
        )
        if progress is not None and (t - start + 1) % 50 == 0:
            progress(t - start + 1, total)
    _check_reserves(executor, pool, "at the end")
    chain_base, chain_quote = executor.balances()
    if (chain_base - base0, chain_quote - quote0) != (base, quote + gas_paid_units):
        raise ChainError(
            f"parity broken: the trader holds (base {chain_base - base0}, quote "
            f"{chain_quote - quote0}) on-chain, the mirror (base {base}, quote "
            f"{quote + gas_paid_units} before gas)"
        )
    extra: dict[str, Any] = {
        "execution": "onchain",
        "transactions": transactions,
        "gas_used": gas_used,
    }
    if venue.record_hashes is not None and record.hashes:
        extra["decision_log_head"] = venue.record_hashes(record.hashes)
        extra["decisions_logged"] = len(record.hashes)
    if progress is not None:
        progress(total, total)
    return record.result(policy.name, policy.kind, data, start, initial, extra=extra)


def _check_reserves(executor: Any, pool: MarketCoupledPool, when: str) -> None:
    chain = executor.reserves()
    mirror = pool.state
    if mirror is None or (chain.base, chain.quote) != (mirror.base, mirror.quote):
        raise ChainError(
            f"parity broken {when}: the pool holds (base {chain.base}, quote {chain.quote}), "
            f"the mirror (base {mirror and mirror.base}, quote {mirror and mirror.quote})"
        )


def open_onchain_venue(backend: Any, deployment: Any, trader: str | None = None) -> OnChainVenue:
    """Return a venue on a deployment made by `agent.chain.deploy.deploy_all`.

    Args:
        backend: the chain backend (`agent.chain.backends`).
        deployment: the contracts; the pool must be freshly seeded at the first bar's price.
        trader: the trading account; default the backend's second account (the operator
            arbitrages the pool and must not be the trader).
    """
    from agent.dex.executor import OnChainExecutor

    accounts = backend.accounts
    if trader is None:
        if len(accounts) < 2:
            raise ChainError(
                f"an on-chain backtest needs a second account to trade with; {backend.name} "
                "has only the operator"
            )
        trader = accounts[1]
    w3 = backend.w3
    executor = OnChainExecutor(
        backend, deployment.pool, deployment.market_base, deployment.market_quote, trader
    )
    quote_token = deployment.contract(w3, "market_quote")
    log = deployment.contract(w3, "decision_log")

    def mint_quote(account: str, amount: int) -> None:
        backend.transact(quote_token.functions.mint(account, amount))

    def record_hashes(hashes: list[bytes]) -> str:
        for i in range(0, len(hashes), _LOG_BATCH):
            backend.transact(log.functions.recordBatch(hashes[i : i + _LOG_BATCH]))
        return "0x" + bytes(log.functions.head().call()).hex()

    return OnChainVenue(executor, mint_quote, record_hashes)
