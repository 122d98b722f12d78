"""`--onchain` backtests: the same rollout, with every trade sent as a transaction through the pool.

The run is the one rollout (`agent.env.rollout`) with a per-step callback: after the mirror
(`MarketCoupledPool`) couples to the bar's price and decides the trade, the callback arbitrages
the contract pool to the same price, sends the trade through `OnChainExecutor` (which checks
that the chain paid exactly what the mirror computed) and writes the decision as an
`agent.audit.record` DecisionRecord, with the swap's real transaction hash and gas. After the
run the records are chained by `prev_hash` and hashed, once each (`chain_records`), their hashes
appended to the run's own DecisionLog in batches, and returned, so `agora audit verify --run RUN`
checks an on-chain backtest exactly as it checks the service's trail. An off-chain backtest
hashes nothing: this module computes no hash on import, and only `run_onchain` builds records.

The trader is the chain's second account; on a chain with one key (`rpc`) the operator trades
too: it then arbitrages from a float minted once, and the run's accounting takes the
arbitrage flows out of the account's balances before comparing them with the mirror's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from agent.audit.record import (
    ZERO_HASH,
    DecisionFields,
    DecisionRecord,
    ExecutedTrade,
    chain_head,
    chain_records,
    observation_digest,
)
from agent.backtest.engine import BacktestConfig, BacktestResult, Progress, run_backtest
from agent.dex.pool import MarketCoupledPool
from agent.env.rollout import ModelPolicy, Policy, Step
from agent.env.trading_env import MarketData
from agent.errors import ChainError

LOG_BATCH = 100
"""Decision hashes per DecisionLog transaction."""
NO_OBSERVATION = "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
"""The observation digest of a rule or baseline policy, which observes nothing: keccak256 of
the empty string, written out so that importing this module (as every backtest does) hashes
nothing."""


@dataclass
class OnChainVenue:
    """A fresh pool on a chain, a funded trader and the run's DecisionLog, for `run_onchain`.

    Attributes:
        executor: trades as `trader` through the deployed pool (see agent.chain.executor).
        mint_quote: mints quote tokens to an account (the operator owns the market tokens).
        record_hashes: appends decision hashes to the DecisionLog; returns the on-chain head.
        log_address: the DecisionLog's address.
        shared_account: whether the trader is the operator (one key), which also arbitrages.
    """

    executor: Any
    mint_quote: Callable[[str, int], None]
    record_hashes: Callable[[list[str]], str]
    log_address: str
    shared_account: bool = False


@dataclass(frozen=True)
class RecordContext:
    """What every decision record of a run shares.

    Attributes:
        market: `source:symbol:timeframe` of the data.
        model_id: the policy's id as bytes32 hex (a model's id, or `text_id` of a rule's name).
        config_hash: `agent.audit.record.config_digest` of the configuration.
    """

    market: str
    model_id: str
    config_hash: str


@dataclass(frozen=True)
class OnChainRun:
    """An on-chain backtest: the result, its decision records and where they were logged.

    `hashes` are the records' decision hashes, in order, computed once when they were logged.
    """

    result: BacktestResult
    records: tuple[DecisionRecord, ...]
    hashes: tuple[str, ...]
    log_address: str
    head: str
    chain_key: str = ""


def run_onchain(
    data: MarketData,
    policy: Policy,
    config: BacktestConfig,
    venue: OnChainVenue,
    context: RecordContext,
    *,
    progress: Progress | None = None,
) -> OnChainRun:
    """Run `policy` through the rollout with every trade sent through the pool contract.

    Before every decision the contract pool is arbitraged to the bar's price, as the mirror is;
    every swap checks the chain's amounts and reserves against the mirror's, as does a final
    comparison, so any divergence is caught to the wei. At the end the trader's balances must
    equal the mirror's (the simulated gas, paid in quote off-chain, is paid in the native
    token on-chain and is added back for the comparison), and the DecisionLog's head must
    equal the head of the run's records.

    Raises:
        ChainError: the chain and the mirror disagree anywhere ("parity broken"), the pool
            does not start at the mirror's reserves (the venue's pool must be fresh), or the
            log's head differs from the records'.
    """
    start, _ = config.window(data)
    executor = venue.executor
    mirror = MarketCoupledPool(config.pool)
    mirror.reset(float(data.close[start]))
    _check_reserves(executor, mirror.state, "at the start (is the pool fresh?)")
    base0, quote0 = executor.balances()
    quote_units = round(config.initial_value_quote * 10**config.pool.quote_decimals)
    venue.mint_quote(executor.trader, quote_units)
    fee_bps = config.pool.fee_bps
    times = np.asarray(data.open_time, dtype="int64")
    names = data.strategy_names
    decisions: list[DecisionFields] = []
    totals = {"gas_quote": 0, "gas_used": 0, "transactions": 0}
    arbitrage_flow = [0, 0]  # (base, quote) the arbitrage moved: the trader's too when shared
    state = {"pool": mirror.state, "base": 0, "quote": quote_units}

    def on_step(step: Step) -> None:
        state.update(pool=step.fill.pool_after, base=step.base, quote=step.quote)
        price = float(data.close[step.t])
        arbitrage = executor.arbitrage_to_price(price)
        if arbitrage is not None:
            totals["transactions"] += 1
            if venue.shared_account:
                paid, received = (0, 1) if arbitrage.token_in == "base" else (1, 0)
                arbitrage_flow[paid] -= arbitrage.amount_in
                arbitrage_flow[received] += arbitrage.amount_out
        _check_reserves(executor, step.fill.pool_coupled, f"at bar {step.t} after arbitrage")
        trade = step.fill.trade
        executed = ExecutedTrade()
        if trade.side != "none":
            receipt = executor.execute(trade, expected_reserves_after=step.fill.pool_after)
            totals["gas_quote"] += trade.gas_quote
            totals["gas_used"] += receipt.gas_used
            totals["transactions"] += 1
            executed = ExecutedTrade(
                side=trade.side,
                amount_in=trade.amount_in,
                amount_out=trade.amount_out,
                fee=trade.amount_in * fee_bps // 10_000,
                gas_used=receipt.gas_used,
                tx_hash=receipt.tx_hash,
            )
        digest = (
            NO_OBSERVATION if step.observation is None else observation_digest(step.observation)
        )
        decisions.append(
            DecisionFields(
                bar_time_ms=int(times[step.t]),
                market=context.market,
                model_id=context.model_id,
                config_hash=context.config_hash,
                observation_digest=digest,
                strategy_names=names,
                signals=tuple(float(v) for v in data.signals[step.t]),
                masks=tuple(bool(m) for m in data.mask[step.t]),
                target_exposure=step.target,
                trade=executed,
            )
        )

    result = run_backtest(data, policy, config, progress=progress, callback=on_step)
    _check_reserves(executor, state["pool"], "at the end")
    chain_base, chain_quote = executor.balances()
    base, quote = state["base"], state["quote"]
    held = (
        chain_base - base0 - arbitrage_flow[0],
        chain_quote - quote0 - arbitrage_flow[1] - totals["gas_quote"],
    )
    if held != (base, quote):
        raise ChainError(
            f"parity broken: the trader holds (base {held[0]}, quote {held[1]} after gas) "
            f"on-chain, the mirror (base {base}, quote {quote})"
        )
    records, hashes = chain_records(decisions)
    head = venue.record_hashes(hashes) if hashes else ZERO_HASH
    expected_head = chain_head(hashes)
    if head != expected_head:
        raise ChainError(
            f"the DecisionLog at {venue.log_address} has head {head}; the run's records give "
            f"{expected_head}"
        )
    extra = {
        **result.extra,
        "execution": "onchain",
        "transactions": totals["transactions"],
        "gas_used": totals["gas_used"],
        "decision_log": venue.log_address,
        "decision_log_head": head,
        "decisions_logged": len(hashes),
    }
    if isinstance(policy, ModelPolicy) and policy.model_id:
        extra["model_id"] = policy.model_id
    return OnChainRun(
        replace(result, extra=extra), tuple(records), tuple(hashes), venue.log_address, head
    )


def _check_reserves(executor: Any, expected: Any, when: str) -> None:
    chain = executor.reserves()
    if expected is None or (chain.base, chain.quote) != (expected.base, expected.quote):
        raise ChainError(
            f"parity broken {when}: the pool holds (base {chain.base}, quote {chain.quote}), "
            f"the mirror (base {expected and expected.base}, quote {expected and expected.quote})"
        )


def open_onchain_venue(backend: Any, deployment: Any, trader: str | None = None) -> OnChainVenue:
    """Return a venue on a deployment made by `agent.chain.deploy.deploy_all`.

    Args:
        backend: the chain backend (`agent.chain.backends`).
        deployment: the contracts; the pool must be freshly seeded at the first bar's price.
        trader: the trading account; default the backend's second account, or the operator on
            a chain with one key (`rpc`), which is then minted a float for its arbitrage.
    """
    from agent.chain.executor import OPERATOR_FLOAT, OnChainExecutor

    accounts = backend.accounts
    if trader is None:
        trader = accounts[1] if len(accounts) > 1 else backend.operator
    w3 = backend.w3
    executor = OnChainExecutor(
        backend, deployment.pool, deployment.market_base, deployment.market_quote, trader
    )
    shared = executor.trader == backend.operator
    base_token = deployment.contract(w3, "market_base")
    quote_token = deployment.contract(w3, "market_quote")
    log = deployment.contract(w3, "decision_log")

    def mint_quote(account: str, amount: int) -> None:
        backend.transact(quote_token.functions.mint(account, amount))

    if shared:  # the operator trades: its arbitrage must never draw on the portfolio
        backend.transact(base_token.functions.mint(backend.operator, OPERATOR_FLOAT[0]))
        mint_quote(backend.operator, OPERATOR_FLOAT[1])

    def record_hashes(hashes: list[str]) -> str:
        for i in range(0, len(hashes), LOG_BATCH):
            batch = [bytes.fromhex(h[2:]) for h in hashes[i : i + LOG_BATCH]]
            backend.transact(log.functions.recordBatch(batch))
        return "0x" + bytes(log.functions.head().call()).hex()

    return OnChainVenue(executor, mint_quote, record_hashes, deployment.decision_log, shared)
