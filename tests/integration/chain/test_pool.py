"""ConstantProductPool and MarketToken on both backends: swaps, liquidity, every revert path."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.logs import DISCARD

if TYPE_CHECKING:
    from tests.integration.chain.conftest import ChainEnv

MINIMUM_LIQUIDITY = 1_000
DEAD = "0x000000000000000000000000000000000000dEaD"
ONE_BASE = 10**18
ONE_QUOTE = 10**6
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _swap(
    chain: ChainEnv,
    sender: str,
    token_in: str,
    amount_in: int,
    min_out: int = 0,
    deadline: int | None = None,
) -> dict:
    deadline = chain.deadline() if deadline is None else deadline
    call = chain.pool.functions.swapExactIn(token_in, amount_in, min_out, deadline, sender)
    return chain.transact(call, sender)


# --- swaps -------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["sell_base", "buy_base"])
def test_swap_pays_exactly_the_quoted_amount_and_emits_swap(
    chain: ChainEnv, direction: str
) -> None:
    chain.fund(chain.alice, base=10 * ONE_BASE, quote=1_000 * ONE_QUOTE)
    if direction == "sell_base":
        token_in, token_out, amount_in = chain.base, chain.quote, 3 * ONE_BASE
    else:
        token_in, token_out, amount_in = chain.quote, chain.base, 250 * ONE_QUOTE
    reserve_base, reserve_quote = chain.reserves()
    reserve_in, reserve_out = (
        (reserve_base, reserve_quote) if direction == "sell_base" else (reserve_quote, reserve_base)
    )
    quoted = chain.pool.functions.getAmountOut(amount_in, reserve_in, reserve_out).call()
    assert chain.pool.functions.quoteExactIn(token_in.address, amount_in).call() == quoted
    before = token_out.functions.balanceOf(chain.alice).call()

    receipt = _swap(chain, chain.alice, token_in.address, amount_in)

    assert token_out.functions.balanceOf(chain.alice).call() - before == quoted
    (event,) = chain.pool.events.Swap().process_receipt(receipt, errors=DISCARD)
    expected = (amount_in, 0, 0, quoted) if direction == "sell_base" else (0, amount_in, quoted, 0)
    args = event["args"]
    assert (args.amount0In, args.amount1In, args.amount0Out, args.amount1Out) == expected
    assert args.sender == chain.alice and args.to == chain.alice


def test_swap_reverts_when_deadline_has_passed(chain: ChainEnv) -> None:
    chain.fund(chain.alice, quote=100 * ONE_QUOTE)
    call = chain.pool.functions.swapExactIn(
        chain.quote.address, ONE_QUOTE, 0, chain.deadline(-1), chain.alice
    )
    with chain.reverts("Pool: EXPIRED"):
        chain.transact(call, chain.alice)


def test_swap_reverts_when_min_amount_out_not_met(chain: ChainEnv) -> None:
    chain.fund(chain.alice, quote=100 * ONE_QUOTE)
    quoted = chain.pool.functions.quoteExactIn(chain.quote.address, 50 * ONE_QUOTE).call()
    with chain.reverts("Pool: INSUFFICIENT_OUTPUT_AMOUNT"):
        _swap(chain, chain.alice, chain.quote.address, 50 * ONE_QUOTE, min_out=quoted + 1)
    _swap(chain, chain.alice, chain.quote.address, 50 * ONE_QUOTE, min_out=quoted)


def test_low_level_swap_reverts_with_k_when_asking_one_unit_too_much(chain: ChainEnv) -> None:
    chain.fund(chain.alice, quote=100 * ONE_QUOTE)
    amount_in = 100 * ONE_QUOTE
    fair_out = chain.pool.functions.quoteExactIn(chain.quote.address, amount_in).call()
    chain.transact(chain.quote.functions.transfer(chain.pool.address, amount_in), chain.alice)
    with chain.reverts("Pool: K"):
        chain.transact(chain.pool.functions.swap(fair_out + 1, 0, chain.alice), chain.alice)
    chain.transact(chain.pool.functions.swap(fair_out, 0, chain.alice), chain.alice)
    assert chain.base.functions.balanceOf(chain.alice).call() == fair_out


def test_swap_reverts_for_a_token_that_is_not_in_the_pool(chain: ChainEnv) -> None:
    other = chain.deploy("MarketToken", "Other", "OTH", 18)
    with chain.reverts("Pool: INVALID_TOKEN"):
        _swap(chain, chain.alice, other.address, ONE_BASE)


def test_swap_without_allowance_reverts_with_a_readable_reason(chain: ChainEnv) -> None:
    chain.transact(chain.quote.functions.mint(chain.bob, 10 * ONE_QUOTE))
    with chain.reverts("Pool: INSUFFICIENT_ALLOWANCE"):
        _swap(chain, chain.bob, chain.quote.address, ONE_QUOTE)


@pytest.mark.parametrize("mode", [1, 2], ids=["on_transfer_from", "on_transfer"])
def test_reentrant_swap_through_malicious_token_reverts_locked(chain: ChainEnv, mode: int) -> None:
    evil = chain.deploy("MaliciousToken", folder="test")
    pool = chain.deploy("ConstantProductPool", evil.address, chain.quote.address, 30)
    for token, amount in ((evil, 1_000 * ONE_BASE), (chain.quote, 100_000 * ONE_QUOTE)):
        chain.transact(token.functions.mint(chain.alice, amount))
        chain.transact(token.functions.approve(pool.address, 2**256 - 1), chain.alice)
    add = pool.functions.addLiquidity(100 * ONE_BASE, 10_000 * ONE_QUOTE, chain.alice)
    chain.transact(add, chain.alice)
    chain.transact(evil.functions.setAttack(pool.address, mode))
    # mode 1 re-enters from transferFrom (evil paid in); mode 2 from transfer (evil paid out).
    token_in, amount_in = (evil, ONE_BASE) if mode == 1 else (chain.quote, 100 * ONE_QUOTE)
    before = pool.functions.getReserves().call()[:2]
    call = pool.functions.swapExactIn(token_in.address, amount_in, 0, chain.deadline(), chain.alice)
    with chain.reverts("Pool: LOCKED"):
        chain.transact(call, chain.alice)
    assert pool.functions.getReserves().call()[:2] == before
    chain.transact(evil.functions.setAttack(pool.address, 0))
    chain.transact(call, chain.alice)


# --- liquidity ---------------------------------------------------------------------------


def test_seeded_pool_locked_minimum_liquidity_on_first_mint(chain: ChainEnv) -> None:
    reserve_base, reserve_quote = chain.reserves()
    supply = chain.pool.functions.totalSupply().call()
    assert supply == math.isqrt(reserve_base * reserve_quote)
    assert chain.pool.functions.balanceOf(DEAD).call() == MINIMUM_LIQUIDITY
    assert chain.pool.functions.balanceOf(chain.operator).call() == supply - MINIMUM_LIQUIDITY
    assert chain.balances_of_pool() == (reserve_base, reserve_quote)


def test_first_add_liquidity_locks_minimum_liquidity_and_emits_mint(chain: ChainEnv) -> None:
    base = chain.deploy("MarketToken", "B", "B", 18)
    quote = chain.deploy("MarketToken", "Q", "Q", 6)
    pool = chain.deploy("ConstantProductPool", base.address, quote.address, 30)
    amounts = (4 * ONE_BASE, 900 * ONE_QUOTE)
    for token, amount in zip((base, quote), amounts, strict=True):
        chain.transact(token.functions.mint(chain.alice, amount))
        chain.transact(token.functions.approve(pool.address, amount), chain.alice)
    receipt = chain.transact(pool.functions.addLiquidity(*amounts, chain.bob), chain.alice)
    root = math.isqrt(amounts[0] * amounts[1])
    assert pool.functions.balanceOf(chain.bob).call() == root - MINIMUM_LIQUIDITY
    assert pool.functions.balanceOf(DEAD).call() == MINIMUM_LIQUIDITY
    assert pool.functions.totalSupply().call() == root
    (event,) = pool.events.Mint().process_receipt(receipt, errors=DISCARD)
    assert (event["args"].sender, event["args"].amount0, event["args"].amount1) == (
        chain.alice,
        *amounts,
    )


def test_first_add_liquidity_reverts_when_it_would_not_exceed_minimum(chain: ChainEnv) -> None:
    base = chain.deploy("MarketToken", "B", "B", 18)
    quote = chain.deploy("MarketToken", "Q", "Q", 6)
    pool = chain.deploy("ConstantProductPool", base.address, quote.address, 30)
    for token in (base, quote):
        chain.transact(token.functions.mint(chain.alice, 1_000))
        chain.transact(token.functions.approve(pool.address, 1_000), chain.alice)
    with chain.reverts("Pool: INSUFFICIENT_LIQUIDITY_MINTED"):
        chain.transact(pool.functions.addLiquidity(1_000, 1_000, chain.alice), chain.alice)


def test_add_liquidity_takes_the_current_ratio_and_remove_returns_proportional_amounts(
    chain: ChainEnv,
) -> None:
    chain.fund(chain.alice, base=50 * ONE_BASE, quote=100_000 * ONE_QUOTE)
    reserve_base, reserve_quote = chain.reserves()
    supply = chain.pool.functions.totalSupply().call()
    desired_base, desired_quote = 50 * ONE_BASE, 100_000 * ONE_QUOTE
    chain.transact(
        chain.pool.functions.addLiquidity(desired_base, desired_quote, chain.alice), chain.alice
    )
    optimal_quote = desired_base * reserve_quote // reserve_base
    take_base, take_quote = (
        (desired_base, optimal_quote)
        if optimal_quote <= desired_quote
        else (desired_quote * reserve_base // reserve_quote, desired_quote)
    )
    minted = chain.pool.functions.balanceOf(chain.alice).call()
    assert minted == min(take_base * supply // reserve_base, take_quote * supply // reserve_quote)
    assert chain.reserves() == (reserve_base + take_base, reserve_quote + take_quote)

    burn = minted // 3
    pool_base, pool_quote = chain.balances_of_pool()
    supply = chain.pool.functions.totalSupply().call()
    base_before = chain.base.functions.balanceOf(chain.carol).call()
    quote_before = chain.quote.functions.balanceOf(chain.carol).call()
    receipt = chain.transact(chain.pool.functions.removeLiquidity(burn, chain.carol), chain.alice)
    out_base = chain.base.functions.balanceOf(chain.carol).call() - base_before
    out_quote = chain.quote.functions.balanceOf(chain.carol).call() - quote_before
    assert (out_base, out_quote) == (burn * pool_base // supply, burn * pool_quote // supply)
    (event,) = chain.pool.events.Burn().process_receipt(receipt, errors=DISCARD)
    assert (event["args"].amount0, event["args"].amount1, event["args"].to) == (
        out_base,
        out_quote,
        chain.carol,
    )
    with chain.reverts("Pool: INSUFFICIENT_LP_BALANCE"):
        chain.transact(chain.pool.functions.removeLiquidity(minted, chain.carol), chain.alice)


# --- market token ------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["base", "quote"])
def test_market_token_mint_by_non_owner_reverts(chain: ChainEnv, token: str) -> None:
    contract = chain.base if token == "base" else chain.quote
    with chain.reverts("MarketToken: CALLER_NOT_OWNER"):
        chain.transact(contract.functions.mint(chain.alice, 1), chain.alice)


def test_market_tokens_have_the_deployed_names_and_decimals(chain: ChainEnv) -> None:
    quote, base = chain.quote.functions, chain.base.functions
    assert (quote.name().call(), quote.symbol().call(), quote.decimals().call()) == (
        "Agora USD",
        "aUSD",
        6,
    )
    assert (base.symbol().call(), base.decimals().call()) == ("aBASE", 18)
    assert chain.pool.functions.token0().call() == chain.base.address
    assert chain.pool.functions.token1().call() == chain.quote.address


# --- invariants --------------------------------------------------------------------------

swap_sequences = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=1, max_value=10**6)), min_size=1, max_size=4
)


def _amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = 30) -> int:
    with_fee = amount_in * (10_000 - fee_bps)
    return with_fee * reserve_out // (reserve_in * 10_000 + with_fee)


@PROPERTY
@given(swaps=swap_sequences)
def test_k_never_decreases_and_reserves_match_balances(
    chain: ChainEnv, swaps: list[tuple[bool, int]]
) -> None:
    """Random swaps (amounts in millionths of 1,000 base / 100,000 quote) never shrink k."""
    if chain.base.functions.balanceOf(chain.alice).call() == 0:  # the first example funds
        chain.fund(chain.alice, base=10**6 * ONE_BASE, quote=10**8 * ONE_QUOTE)
    reserve_base, reserve_quote = chain.reserves()
    deadline = chain.deadline()
    for sell_base, millionths in swaps:
        if sell_base:
            token, amount = chain.base, max(1_000 * ONE_BASE * millionths // 10**6, 1)
            out = _amount_out(amount, reserve_base, reserve_quote)
        else:
            token, amount = chain.quote, max(100_000 * ONE_QUOTE * millionths // 10**6, 1)
            out = _amount_out(amount, reserve_quote, reserve_base)
        if out == 0:
            continue  # a dust trade with zero output reverts like V2; not what this checks
        receipt = _swap(chain, chain.alice, token.address, amount, deadline=deadline)
        (sync,) = chain.pool.events.Sync().process_receipt(receipt, errors=DISCARD)
        new_base, new_quote = sync["args"].reserve0, sync["args"].reserve1
        assert new_base * new_quote >= reserve_base * reserve_quote
        assert (new_base, new_quote) == (
            (reserve_base + amount, reserve_quote - out)
            if sell_base
            else (reserve_base - out, reserve_quote + amount)
        )
        assert chain.balances_of_pool() == (new_base, new_quote)
        reserve_base, reserve_quote = new_base, new_quote
    assert chain.reserves() == (reserve_base, reserve_quote)


@PROPERTY
@given(donation_base=st.integers(0, 10**20), donation_quote=st.integers(0, 10**9))
def test_sync_sets_reserves_to_balances_after_a_donation(
    chain: ChainEnv, donation_base: int, donation_quote: int
) -> None:
    chain.transact(chain.base.functions.mint(chain.pool.address, donation_base))
    chain.transact(chain.quote.functions.mint(chain.pool.address, donation_quote))
    reserves = chain.reserves()
    chain.transact(chain.pool.functions.sync(), chain.bob)
    assert chain.reserves() == chain.balances_of_pool()
    assert chain.reserves() == (reserves[0] + donation_base, reserves[1] + donation_quote)
