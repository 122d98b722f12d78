"""The on-chain executor: approvals, reverts with reasons, receipts, and parity with the
market-coupled pool simulation over a sequence of bars. Runs on embedded and anvil."""

from __future__ import annotations

import math
import random

import pytest
from eth_typing import HexStr

from agent.chain.backends import ChainBackend
from agent.chain.executor import MAX_UINT256, SWAP_GAS_LIMIT, OnChainExecutor
from agent.dex import amm
from agent.dex.pool import MarketCoupledPool, PoolConfig, TradeResult
from agent.errors import ChainError, TransactionReverted
from tests.integration.dex.conftest import DeployedPool, deploy_pool, fund

E6 = 10**6
E18 = 10**18


def make_market(
    backend: ChainBackend, *, gas_limit: int | None = SWAP_GAS_LIMIT
) -> tuple[DeployedPool, OnChainExecutor]:
    """A 1,000 base / 3M USD pool and an executor for a funded trader (accounts[1])."""
    deployed = deploy_pool(backend, reserve_base=1_000 * E18, reserve_quote=3_000_000 * E6)
    trader = backend.accounts[1]
    fund(backend, deployed, trader, base=100 * E18, quote=1_000_000 * E6)
    executor = OnChainExecutor(
        backend,
        deployed.address,
        deployed.base.address,
        deployed.quote.address,
        trader,
        gas_limit=gas_limit,
    )
    return deployed, executor


def approvals(deployed: DeployedPool, owner: str) -> dict[str, list[int]]:
    """Approval events emitted by `owner` on each token, as their values."""
    return {
        name: [
            event["args"]["value"]
            for event in token.events.Approval().get_logs(
                from_block=0, argument_filters={"owner": owner}
            )
        ]
        for name, token in (("base", deployed.base), ("quote", deployed.quote))
    }


# ------------------------------------------------------------------ approvals and receipts


def test_pool_is_approved_once_per_token_with_an_unlimited_allowance(
    backend: ChainBackend,
) -> None:
    deployed, executor = make_market(backend)
    trader = executor.trader
    assert approvals(deployed, trader) == {"base": [], "quote": []}
    for _ in range(3):
        executor.swap_exact_in("quote", 1_000 * E6, 1)
        executor.swap_exact_in("base", E18 // 3, 1)
    assert approvals(deployed, trader) == {"base": [MAX_UINT256], "quote": [MAX_UINT256]}
    for token in (deployed.base, deployed.quote):
        assert token.functions.allowance(trader, deployed.address).call() == MAX_UINT256
    # A new executor sees the standing allowance and does not approve again.
    fresh = OnChainExecutor(
        backend, deployed.address, deployed.base.address, deployed.quote.address, trader
    )
    fresh.swap_exact_in("quote", 1_000 * E6, 1)
    fresh.swap_exact_in("base", E18, 1)
    assert approvals(deployed, trader) == {"base": [MAX_UINT256], "quote": [MAX_UINT256]}


def test_swap_receipt_reports_amounts_gas_block_and_reserves(backend: ChainBackend) -> None:
    _, executor = make_market(backend)
    before = executor.reserves()
    balances_before = executor.balances()
    quoted = executor.quote("quote", 25_000 * E6)
    receipt = executor.swap_exact_in("quote", 25_000 * E6, quoted)
    assert (receipt.token_in, receipt.amount_in, receipt.amount_out) == (
        "quote",
        25_000 * E6,
        quoted,
    )
    assert executor.balances() == (
        balances_before[0] + quoted,
        balances_before[1] - 25_000 * E6,
    )
    assert (
        receipt.reserves_after
        == executor.reserves()
        == before.after_swap("quote", 25_000 * E6, quoted)
    )
    assert receipt.block_number == backend.w3.eth.block_number
    assert 40_000 < receipt.gas_used < SWAP_GAS_LIMIT
    transaction = backend.w3.eth.get_transaction(HexStr(receipt.tx_hash))
    assert transaction["from"] == executor.trader
    assert transaction["blockNumber"] == receipt.block_number
    assert len(receipt.tx_hash) == 66 and receipt.tx_hash.startswith("0x")


def test_executor_refuses_a_pool_that_trades_other_tokens(backend: ChainBackend) -> None:
    deployed, _ = make_market(backend)
    other = deploy_pool(backend)
    with pytest.raises(ChainError, match="trades"):
        OnChainExecutor(backend, deployed.address, deployed.base.address, other.quote.address)


def test_swap_refuses_an_unknown_token_name(backend: ChainBackend) -> None:
    _, executor = make_market(backend)
    with pytest.raises(amm.AmmError, match="'usd'"):
        executor.swap_exact_in("usd", 1, 1)  # type: ignore[arg-type]


def test_a_revoked_allowance_is_granted_again_after_the_revert(backend: ChainBackend) -> None:
    deployed, executor = make_market(backend)
    executor.swap_exact_in("quote", 1_000 * E6, 1)
    backend.transact(deployed.quote.functions.approve(deployed.address, 0), sender=executor.trader)
    with pytest.raises(TransactionReverted) as info:
        executor.swap_exact_in("quote", 1_000 * E6, 1)
    assert info.value.reason == "Pool: INSUFFICIENT_ALLOWANCE"
    assert executor.swap_exact_in("quote", 1_000 * E6, 1).amount_in == 1_000 * E6
    assert approvals(deployed, executor.trader)["quote"] == [MAX_UINT256, 0, MAX_UINT256]


# ------------------------------------------------------------------ reverts


@pytest.mark.parametrize("gas_limit", [SWAP_GAS_LIMIT, None], ids=["fixed-gas", "estimated-gas"])
def test_swap_reverts_when_min_amount_out_not_met(
    backend: ChainBackend, gas_limit: int | None
) -> None:
    _, executor = make_market(backend, gas_limit=gas_limit)
    before, balances = executor.reserves(), executor.balances()
    quoted = executor.quote("quote", 10_000 * E6)
    with pytest.raises(TransactionReverted) as info:
        executor.swap_exact_in("quote", 10_000 * E6, quoted + 1)
    assert info.value.reason == "Pool: INSUFFICIENT_OUTPUT_AMOUNT"
    assert str(info.value) == "swapExactIn reverted: Pool: INSUFFICIENT_OUTPUT_AMOUNT"
    assert (executor.reserves(), executor.balances()) == (before, balances)
    assert executor.swap_exact_in("quote", 10_000 * E6, quoted).amount_out == quoted


@pytest.mark.parametrize("gas_limit", [SWAP_GAS_LIMIT, None], ids=["fixed-gas", "estimated-gas"])
def test_swap_reverts_when_deadline_has_passed(
    backend: ChainBackend, gas_limit: int | None
) -> None:
    _, executor = make_market(backend, gas_limit=gas_limit)
    before = executor.reserves()
    with pytest.raises(
        TransactionReverted, match=r"^swapExactIn reverted: Pool: EXPIRED, twice"
    ) as info:
        executor.swap_exact_in("base", E18, 1, deadline_s=-3600)
    assert info.value.reason == "Pool: EXPIRED"
    assert executor.reserves() == before


def test_swap_reverts_when_trader_lacks_the_input(backend: ChainBackend) -> None:
    _, executor = make_market(backend)
    base_balance, _ = executor.balances()
    with pytest.raises(TransactionReverted) as info:
        executor.swap_exact_in("base", base_balance + 1, 1)
    assert info.value.reason == "Pool: INSUFFICIENT_BALANCE"


# ------------------------------------------------------------------ parity with the mirror


@pytest.mark.parametrize("base_is_token0", [True, False], ids=["base-token0", "base-token1"])
def test_execute_matches_market_coupled_pool_over_bars(
    backend: ChainBackend, base_is_token0: bool
) -> None:
    """Couple to each bar's price and trade to a target exposure, off-chain and on-chain."""
    sim = MarketCoupledPool(PoolConfig(liquidity_quote=2_000_000.0, fee_bps=30))
    price = 3_000.0
    state = sim.reset(price)
    deployed = deploy_pool(
        backend,
        fee_bps=30,
        base_is_token0=base_is_token0,
        reserve_base=state.base,
        reserve_quote=state.quote,
    )
    trader = backend.accounts[2]
    base_balance, quote_balance = 0, 200_000 * E6
    fund(backend, deployed, trader, quote=quote_balance)
    executor = OnChainExecutor(
        backend, deployed.address, deployed.base.address, deployed.quote.address, trader
    )
    assert executor.reserves() == state  # same reserves and LP supply
    rng = random.Random(11)
    gas_paid_quote = 0
    sides: list[str] = []
    for _bar in range(14):
        price *= math.exp(rng.gauss(0.0, 0.03))
        arbitrage_sim = sim.couple(price)
        arbitrage_chain = executor.arbitrage_to_price(price)
        if arbitrage_sim is None:
            assert arbitrage_chain is None
        else:
            assert arbitrage_chain is not None
            assert (
                arbitrage_chain.token_in,
                arbitrage_chain.amount_in,
                arbitrage_chain.amount_out,
            ) == (arbitrage_sim.token_in, arbitrage_sim.amount_in, arbitrage_sim.amount_out)
        assert executor.reserves() == sim.state
        target_exposure = rng.choice([0.0, 1.0, round(rng.random(), 3)])
        trade = sim.trade_to_exposure(base_balance, quote_balance, target_exposure, price)
        receipt = executor.execute(trade, expected_reserves_after=sim.state)
        sides.append(trade.side)
        if trade.side == "none":
            assert receipt is None
        else:
            assert receipt is not None
            assert (receipt.amount_in, receipt.amount_out) == (trade.amount_in, trade.amount_out)
        assert executor.reserves() == sim.state
        base_balance, quote_balance = trade.base_balance, trade.quote_balance
        gas_paid_quote += trade.gas_quote  # simulated gas comes out of quote; on-chain it is ETH
        assert executor.balances() == (base_balance, quote_balance + gas_paid_quote)
    assert {"buy", "sell"} <= set(sides)


def test_execute_of_a_none_trade_sends_nothing(backend: ChainBackend) -> None:
    _, executor = make_market(backend)
    block = backend.w3.eth.block_number
    none = TradeResult("none", 0, 0, 0.0, 0.0, 0, 0, 0)
    assert executor.execute(none) is None
    assert backend.w3.eth.block_number == block


def test_execute_reports_parity_broken_when_the_pool_pays_more(backend: ChainBackend) -> None:
    deployed, executor = make_market(backend)
    planned = amm.swap_exact_in(executor.reserves(), "quote", 10_000 * E6, executor.fee_bps)
    # Someone sells base first: base gets cheaper, the planned buy receives more than planned.
    other = OnChainExecutor(
        backend, deployed.address, deployed.base.address, deployed.quote.address, backend.operator
    )
    fund(backend, deployed, backend.operator, base=10 * E18)
    other.swap_exact_in("base", 10 * E18, 1)
    base_before, _ = executor.balances()
    with pytest.raises(ChainError, match=r"^parity broken: swap 0x[0-9a-f]+ paid") as info:
        executor.execute(planned)
    assert not isinstance(info.value, TransactionReverted)
    assert executor.balances()[0] > base_before + planned.amount_out  # the swap was mined


def test_execute_reports_parity_broken_and_trades_nothing_when_the_pool_pays_less(
    backend: ChainBackend,
) -> None:
    deployed, executor = make_market(backend)
    planned = amm.swap_exact_in(executor.reserves(), "quote", 10_000 * E6, executor.fee_bps)
    other = OnChainExecutor(
        backend, deployed.address, deployed.base.address, deployed.quote.address, backend.operator
    )
    fund(backend, deployed, backend.operator, quote=10_000 * E6)
    other.swap_exact_in("quote", 10_000 * E6, 1)  # base gets dearer first
    before, balances = executor.reserves(), executor.balances()
    with pytest.raises(ChainError, match=r"^parity broken: .*pays less") as info:
        executor.execute(planned)
    assert isinstance(info.value.__cause__, TransactionReverted)
    assert (executor.reserves(), executor.balances()) == (before, balances)
