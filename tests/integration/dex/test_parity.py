"""Two paths, one truth: the contract's pool math equals the off-chain mirror to the wei.

Runs on both chains (embedded py-evm and anvil). Quotes go through the pool's pure views
(`getAmountOut` / `getAmountIn`) over random reserves, thousands of eth_calls; real swaps
(a few hundred transactions per chain, both directions, sizes log-uniform from 1 wei to half
the input reserve) are compared with the mirror computed on the reserves read before each.
All randomness is seeded.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from agent.chain.backends import ChainBackend
from agent.chain.executor import OnChainExecutor
from agent.dex import amm
from agent.dex.amm import AmmError, PoolState, Token
from agent.errors import TransactionReverted
from tests.integration.dex.conftest import PoolFactory, fund, view_many

FEES_BPS = (0, 1, 5, 30, 100, 1_000)
VIEW_QUOTES_PER_FEE = {"embedded": 250, "anvil": 600}
"""getAmountOut checks per fee (getAmountIn: half as many); a py-evm eth_call costs ~5 ms,
anvil's are batched."""
SWAPS_PER_POOL = {"embedded": 150, "anvil": 150}
"""Real swap transactions per pool; two pools per chain (base as token0, then as token1)."""
MAX_REVERTING_SWAPS = 8
"""Swaps the mirror says revert (too small to buy one unit) that are still sent, per pool."""


def log_uniform_int(rng: random.Random, high: int, low: int = 1) -> int:
    """Return an int in [low, high] whose bit length is uniform (log-uniform, all bits random)."""
    bits = rng.randint(low.bit_length(), high.bit_length())
    value = rng.getrandbits(bits) | (1 << (bits - 1))
    return min(max(value, low), high)


def random_reserves(rng: random.Random) -> tuple[int, int]:
    return (log_uniform_int(rng, amm.MAX_RESERVE, 2), log_uniform_int(rng, amm.MAX_RESERVE, 2))


# ------------------------------------------------------------------ views over random reserves


@pytest.mark.parametrize("fee_bps", FEES_BPS)
def test_get_amount_out_view_equals_mirror_over_random_reserves(
    backend: ChainBackend, pool_factory: PoolFactory, fee_bps: int
) -> None:
    pool = pool_factory(fee_bps=fee_bps).pool
    rng = random.Random(f"amount-out-{fee_bps}")
    cases = []
    for _ in range(VIEW_QUOTES_PER_FEE[backend.name]):
        reserve_in, reserve_out = random_reserves(rng)
        cases.append((log_uniform_int(rng, amm.MAX_RESERVE), reserve_in, reserve_out))
    on_chain = view_many(backend, [pool.functions.getAmountOut(*case) for case in cases])
    mirror = [amm.get_amount_out(*case, fee_bps=fee_bps) for case in cases]
    mismatches = [(c, o, m) for c, o, m in zip(cases, on_chain, mirror, strict=True) if o != m]
    assert not mismatches, f"(case, chain, mirror): {mismatches[:5]}"
    assert any(out > 0 for out in mirror) and any(out == 0 for out in mirror)


@pytest.mark.parametrize("fee_bps", FEES_BPS)
def test_get_amount_in_view_equals_mirror_over_random_reserves(
    backend: ChainBackend, pool_factory: PoolFactory, fee_bps: int
) -> None:
    pool = pool_factory(fee_bps=fee_bps).pool
    rng = random.Random(f"amount-in-{fee_bps}")
    cases = []
    for _ in range(VIEW_QUOTES_PER_FEE[backend.name] // 2):
        reserve_in, reserve_out = random_reserves(rng)
        cases.append((log_uniform_int(rng, reserve_out - 1), reserve_in, reserve_out))
    on_chain = view_many(backend, [pool.functions.getAmountIn(*case) for case in cases])
    mirror = [amm.get_amount_in(*case, fee_bps=fee_bps) for case in cases]
    mismatches = [(c, o, m) for c, o, m in zip(cases, on_chain, mirror, strict=True) if o != m]
    assert not mismatches, f"(case, chain, mirror): {mismatches[:5]}"


@pytest.mark.parametrize(
    ("function", "args", "reason"),
    [
        ("getAmountOut", (0, 10**18, 10**18), amm.INSUFFICIENT_INPUT_AMOUNT),
        ("getAmountOut", (1, 0, 10**18), amm.INSUFFICIENT_LIQUIDITY),
        ("getAmountOut", (1, 10**18, 0), amm.INSUFFICIENT_LIQUIDITY),
        ("getAmountIn", (0, 10**18, 10**18), amm.INSUFFICIENT_OUTPUT_AMOUNT),
        ("getAmountIn", (1, 0, 10**18), amm.INSUFFICIENT_LIQUIDITY),
        ("getAmountIn", (10**18, 10**18, 10**18), amm.INSUFFICIENT_LIQUIDITY),
    ],
)
def test_views_and_mirror_refuse_the_same_inputs_with_the_same_reason(
    backend: ChainBackend,
    pool_factory: PoolFactory,
    function: str,
    args: tuple[int, int, int],
    reason: str,
) -> None:
    pool = pool_factory(fee_bps=30).pool
    mirror = amm.get_amount_out if function == "getAmountOut" else amm.get_amount_in
    with pytest.raises(AmmError) as refused:
        mirror(*args, fee_bps=30)
    assert refused.value.reason == reason
    with pytest.raises(Exception, match=f"Pool: {reason}"):
        getattr(pool.functions, function)(*args).call()


def v2_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """Uniswap V2's getAmountOut (UniswapV2Library), fee 0.3 % as 997/1000."""
    amount_in_with_fee = amount_in * 997
    return amount_in_with_fee * reserve_out // (reserve_in * 1000 + amount_in_with_fee)


def v2_amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int:
    """Uniswap V2's getAmountIn (UniswapV2Library), fee 0.3 % as 997/1000."""
    return reserve_in * amount_out * 1000 // ((reserve_out - amount_out) * 997) + 1


def test_fee_30_bps_equals_uniswap_v2_997_over_1000_formula(
    backend: ChainBackend, pool_factory: PoolFactory
) -> None:
    pool = pool_factory(fee_bps=30).pool
    rng = random.Random("v2")
    out_cases, in_cases = [], []
    for _ in range(VIEW_QUOTES_PER_FEE[backend.name] // 2):
        reserve_in, reserve_out = random_reserves(rng)
        out_cases.append((log_uniform_int(rng, amm.MAX_RESERVE), reserve_in, reserve_out))
        in_cases.append((log_uniform_int(rng, reserve_out - 1), reserve_in, reserve_out))
    calls = [pool.functions.getAmountOut(*c) for c in out_cases]
    calls += [pool.functions.getAmountIn(*c) for c in in_cases]
    on_chain = view_many(backend, calls)
    expected = [v2_amount_out(*c) for c in out_cases] + [v2_amount_in(*c) for c in in_cases]
    assert on_chain == expected


def test_mirror_with_fee_30_bps_equals_uniswap_v2_formula() -> None:
    """The same identity for the mirror alone, over many more inputs (no chain)."""
    rng = random.Random("v2-mirror")
    for _ in range(20_000):
        reserve_in, reserve_out = random_reserves(rng)
        amount_in = log_uniform_int(rng, amm.MAX_RESERVE)
        amount_out = log_uniform_int(rng, reserve_out - 1)
        assert amm.get_amount_out(amount_in, reserve_in, reserve_out, 30) == v2_amount_out(
            amount_in, reserve_in, reserve_out
        )
        assert amm.get_amount_in(amount_out, reserve_in, reserve_out, 30) == v2_amount_in(
            amount_out, reserve_in, reserve_out
        )


# ------------------------------------------------------------------ real swaps


@pytest.mark.parametrize("base_is_token0", [True, False], ids=["base-token0", "base-token1"])
def test_random_swaps_equal_mirror_to_the_wei(
    backend: ChainBackend, pool_factory: PoolFactory, base_is_token0: bool
) -> None:
    fee_bps = 30
    deployed = pool_factory(
        fee_bps=fee_bps,
        base_is_token0=base_is_token0,
        reserve_base=10_000 * 10**18,  # 10k base at 3,000 USD
        reserve_quote=30_000_000 * 10**6,
    )
    trader = backend.accounts[1]
    fund(backend, deployed, trader, base=2**100, quote=2**100)
    executor = OnChainExecutor(
        backend, deployed.address, deployed.base.address, deployed.quote.address, trader
    )
    rng = random.Random(f"swaps-{base_is_token0}")
    executed, reverted = 0, 0
    directions: dict[Token, int] = {"base": 0, "quote": 0}
    largest_fraction = 0.0
    while executed < SWAPS_PER_POOL[backend.name]:
        token_in: Token = rng.choice(("base", "quote"))
        before = executor.reserves()
        reserve_in, _ = before.reserves_for(token_in)
        amount_in = log_uniform_int(rng, reserve_in // 2)
        try:
            expected = amm.swap_exact_in(before, token_in, amount_in, fee_bps)
        except AmmError as refused:
            if reverted >= MAX_REVERTING_SWAPS:  # enough of those: the mirror's word suffices
                continue
            with pytest.raises(TransactionReverted) as info:
                executor.swap_exact_in(token_in, amount_in, 0)
            assert info.value.reason == f"Pool: {refused.reason}"
            assert executor.reserves() == before
            reverted += 1
            continue
        if executed % 25 == 0:
            _check_quotes(executor, before, token_in, amount_in, expected.amount_out, fee_bps)
        receipt = executor.swap_exact_in(token_in, amount_in, 0)
        context = _context(before, token_in, amount_in, executed)
        assert (receipt.amount_in, receipt.amount_out) == (amount_in, expected.amount_out), context
        assert receipt.reserves_after == expected.new_state, context
        executed += 1
        directions[token_in] += 1
        largest_fraction = max(largest_fraction, amount_in / reserve_in)
    assert executor.reserves() == expected.new_state
    balances = (
        deployed.base.functions.balanceOf(deployed.address).call(),
        deployed.quote.functions.balanceOf(deployed.address).call(),
    )
    assert balances == (expected.new_state.base, expected.new_state.quote)
    assert min(directions.values()) > executed // 4  # both directions well covered
    assert largest_fraction > 0.2  # sizes reach a large fraction of the reserves
    assert reverted == MAX_REVERTING_SWAPS  # 1-wei-ish inputs revert like the mirror says


def _check_quotes(
    executor: OnChainExecutor,
    before: PoolState,
    token_in: Token,
    amount_in: int,
    amount_out: int,
    fee_bps: int,
) -> None:
    """The executor's quote views agree with the mirror at the current reserves."""
    assert executor.quote(token_in, amount_in) == amount_out
    token_out: Token = "quote" if token_in == "base" else "base"
    reserve_in, reserve_out = before.reserves_for(token_in)
    assert executor.quote_exact_out(token_out, amount_out) == amm.get_amount_in(
        amount_out, reserve_in, reserve_out, fee_bps
    )


def _context(before: PoolState, token_in: Token, amount_in: int, index: int) -> dict[str, Any]:
    return {"swap": index, "before": before, "token_in": token_in, "amount_in": amount_in}
