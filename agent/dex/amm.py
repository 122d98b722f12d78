"""Exact integer mirror of the constant-product pool contract (Uniswap V2 math, fee in bps).

Functional core: no I/O, no floats on amounts. Every function here must agree with
`contracts/src/ConstantProductPool.sol` to the wei, and raise where the contract reverts, with
the same reason string (`AmmError.reason`; the contract prefixes it with "Pool: ").

    AgoraError (and ValueError)
    └── AmmError    an input refused: one the contract reverts on (`reason` = its revert string
                    without "Pool: "), or a bad simulation input such as a NaN price (no reason)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from agent.errors import AgoraError

Token = Literal["base", "quote"]

BPS = 10_000
"""Basis points in one (the fee denominator)."""
DEFAULT_FEE_BPS = 30
"""0.30 %: with this fee the math equals Uniswap V2's 997/1000 formula exactly."""
MAX_FEE_BPS = 1_000
"""The highest fee the pool contract accepts (10 %)."""
MAX_RESERVE = 2**112 - 1
"""Reserves are uint112 on-chain, as in V2."""
MINIMUM_LIQUIDITY = 1_000
"""LP units locked forever by the first mint, as in V2."""
QUOTE_DECIMALS = 6
BASE_DECIMALS = 18

INSUFFICIENT_INPUT_AMOUNT = "INSUFFICIENT_INPUT_AMOUNT"
INSUFFICIENT_OUTPUT_AMOUNT = "INSUFFICIENT_OUTPUT_AMOUNT"
INSUFFICIENT_LIQUIDITY = "INSUFFICIENT_LIQUIDITY"
INSUFFICIENT_LIQUIDITY_MINTED = "INSUFFICIENT_LIQUIDITY_MINTED"
INSUFFICIENT_LIQUIDITY_BURNED = "INSUFFICIENT_LIQUIDITY_BURNED"
INSUFFICIENT_AMOUNT = "INSUFFICIENT_AMOUNT"
INSUFFICIENT_LP_BALANCE = "INSUFFICIENT_LP_BALANCE"
OVERFLOW = "OVERFLOW"


class AmmError(AgoraError, ValueError):
    """The pool refuses an input; `reason` is the revert string the contract would give.

    Derives from `ValueError` as well, because every case is a bad argument value.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class _RationalLike(Protocol):
    def as_integer_ratio(self) -> tuple[int, int]: ...


# --------------------------------------------------------------------------- units


def to_units(amount: float, decimals: int) -> int:
    """Convert a human amount (1.5 USDC) to integer token units (1_500_000), rounding to nearest.

    Goes through the float's shortest decimal repr, so `to_units(0.1, 18) == 10**17` exactly.

    Raises:
        AmmError: if `amount` is NaN or infinite.
    """
    if not math.isfinite(amount):
        raise AmmError(f"cannot convert amount {amount!r} to token units: expected a finite number")
    return int(Decimal(repr(float(amount))).scaleb(decimals).to_integral_value())


def from_units(amount_units: int, decimals: int) -> float:
    """Convert integer token units to a human amount (correctly rounded float)."""
    return amount_units / 10**decimals


# --------------------------------------------------------------------------- swap math


def get_amount_out(
    amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS
) -> int:
    """Return the output of an exact-input swap, as the contract computes it.

    Raises:
        AmmError: `INSUFFICIENT_INPUT_AMOUNT` if `amount_in <= 0`, `INSUFFICIENT_LIQUIDITY` if a
            reserve is empty.
    """
    if amount_in <= 0:
        raise AmmError(f"amount_in is {amount_in}, expected > 0", reason=INSUFFICIENT_INPUT_AMOUNT)
    if reserve_in <= 0 or reserve_out <= 0:
        raise AmmError(
            f"reserves are ({reserve_in}, {reserve_out}), expected both > 0",
            reason=INSUFFICIENT_LIQUIDITY,
        )
    amount_in_with_fee = amount_in * (BPS - fee_bps)
    return amount_in_with_fee * reserve_out // (reserve_in * BPS + amount_in_with_fee)


def get_amount_in(
    amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS
) -> int:
    """Return the input an exact-output swap needs (rounded up by one, as in V2).

    Raises:
        AmmError: `INSUFFICIENT_OUTPUT_AMOUNT` if `amount_out <= 0`, `INSUFFICIENT_LIQUIDITY` if a
            reserve is empty or `amount_out` would drain the output reserve.
    """
    if amount_out <= 0:
        raise AmmError(
            f"amount_out is {amount_out}, expected > 0", reason=INSUFFICIENT_OUTPUT_AMOUNT
        )
    if reserve_in <= 0 or reserve_out <= 0 or amount_out >= reserve_out:
        raise AmmError(
            f"amount_out {amount_out} against reserves ({reserve_in}, {reserve_out}): expected "
            "both reserves > 0 and amount_out < reserve_out",
            reason=INSUFFICIENT_LIQUIDITY,
        )
    numerator = reserve_in * amount_out * BPS
    denominator = (reserve_out - amount_out) * (BPS - fee_bps)
    return numerator // denominator + 1


# --------------------------------------------------------------------------- pool state


@dataclass(frozen=True, slots=True)
class PoolState:
    """Reserves of a base/quote pool, in integer token units, and its LP token supply.

    Immutable: every operation returns a new state.
    """

    base: int
    quote: int
    total_supply: int = 0

    @property
    def k(self) -> int:
        """The constant-product invariant `base * quote` (never decreases across swaps)."""
        return self.base * self.quote

    def reserves_for(self, token_in: Token) -> tuple[int, int]:
        """Return `(reserve_in, reserve_out)` for a swap paying in `token_in`."""
        if token_in == "base":
            return self.base, self.quote
        if token_in == "quote":
            return self.quote, self.base
        raise AmmError(f"token_in is {token_in!r}, expected 'base' or 'quote'")

    def after_swap(self, token_in: Token, amount_in: int, amount_out: int) -> PoolState:
        """Return the state after a swap paying `amount_in` of `token_in` for `amount_out`."""
        if token_in == "base":
            return PoolState(self.base + amount_in, self.quote - amount_out, self.total_supply)
        return PoolState(self.base - amount_out, self.quote + amount_in, self.total_supply)

    def price_quote_per_base(
        self, base_decimals: int = BASE_DECIMALS, quote_decimals: int = QUOTE_DECIMALS
    ) -> float:
        """Return the marginal price (fee excluded) in human units, e.g. USD per ETH."""
        return (self.quote * 10**base_decimals) / (self.base * 10**quote_decimals)


@dataclass(frozen=True, slots=True)
class SwapResult:
    """An executed exact-input swap.

    Attributes:
        amount_in: paid into the pool, in `token_in` units.
        amount_out: received from the pool, in units of the other token.
        fee_paid: `amount_in * fee_bps // 10_000`, in `token_in` units (stays in the pool).
        new_state: the pool after the swap.
        token_in: the token paid in.
    """

    amount_in: int
    amount_out: int
    fee_paid: int
    new_state: PoolState
    token_in: Token


def swap_exact_in(
    state: PoolState, token_in: Token, amount_in: int, fee_bps: int = DEFAULT_FEE_BPS
) -> SwapResult:
    """Swap exactly `amount_in` of `token_in` against the pool.

    Raises:
        AmmError: as `get_amount_out`; `INSUFFICIENT_OUTPUT_AMOUNT` if the input is too small
            to buy a single unit (the contract reverts on a zero output); `OVERFLOW` if the
            input reserve would exceed uint112.
    """
    reserve_in, reserve_out = state.reserves_for(token_in)
    amount_out = get_amount_out(amount_in, reserve_in, reserve_out, fee_bps)
    if amount_out <= 0:
        raise AmmError(
            f"amount_in {amount_in} of {token_in} buys nothing", reason=INSUFFICIENT_OUTPUT_AMOUNT
        )
    if reserve_in + amount_in > MAX_RESERVE:
        raise AmmError(f"reserve {reserve_in} + {amount_in} exceeds uint112", reason=OVERFLOW)
    return SwapResult(
        amount_in=amount_in,
        amount_out=amount_out,
        fee_paid=amount_in * fee_bps // BPS,
        new_state=state.after_swap(token_in, amount_in, amount_out),
        token_in=token_in,
    )


# --------------------------------------------------------------------------- liquidity


@dataclass(frozen=True, slots=True)
class LiquidityResult:
    """A mint or burn: LP units created or destroyed, the token amounts moved, the new pool."""

    liquidity: int
    amount_base: int
    amount_quote: int
    new_state: PoolState


def mint_liquidity(
    state: PoolState, amount_base: int, amount_quote: int, *, base_is_token0: bool = True
) -> LiquidityResult:
    """Add liquidity as the contract's `addLiquidity` does.

    On a pool with reserves, only the largest pair at the current ratio that fits in the
    desired amounts is taken (the V2 router's rule, computed from token0's side first, hence
    `base_is_token0`), so nothing is donated. Shares follow the V2 pair: the first mint creates
    `isqrt(base * quote)` LP units and locks `MINIMUM_LIQUIDITY` of them (they stay in
    `total_supply`); later mints get `min(a0 * supply / r0, a1 * supply / r1)`. `math.isqrt` is
    the floor square root, which is what V2's Babylonian `Math.sqrt` (and OpenZeppelin's) return.

    Args:
        state: the pool before the mint.
        amount_base: the most base to deposit.
        amount_quote: the most quote to deposit.
        base_is_token0: whether base is the contract's token0 (constructor order).

    Returns:
        The LP units minted to the depositor and the amounts actually taken.

    Raises:
        AmmError: `INSUFFICIENT_AMOUNT` if a side to take is zero, `INSUFFICIENT_LIQUIDITY_MINTED`
            if no LP unit would be created, `OVERFLOW` if a reserve would exceed uint112.
    """
    take_base, take_quote = amount_base, amount_quote
    if state.base != 0 and state.quote != 0:
        if base_is_token0:
            take_base, take_quote = _router_pair(amount_base, amount_quote, state.base, state.quote)
        else:
            take_quote, take_base = _router_pair(amount_quote, amount_base, state.quote, state.base)
    if take_base <= 0 or take_quote <= 0:
        raise AmmError(
            f"deposit of ({amount_base}, {amount_quote}) takes ({take_base}, {take_quote}),"
            " expected both > 0",
            reason=INSUFFICIENT_AMOUNT,
        )
    total = state.total_supply
    if total == 0:
        root = math.isqrt(take_base * take_quote)
        liquidity = root - MINIMUM_LIQUIDITY
        new_total = root
    else:
        liquidity = min(take_base * total // state.base, take_quote * total // state.quote)
        new_total = total + liquidity
    if liquidity <= 0:
        raise AmmError(
            f"deposit of ({take_base}, {take_quote}) mints {liquidity} LP units, expected > 0",
            reason=INSUFFICIENT_LIQUIDITY_MINTED,
        )
    new_state = _checked_state(state.base + take_base, state.quote + take_quote, new_total)
    return LiquidityResult(liquidity, take_base, take_quote, new_state)


def _router_pair(desired0: int, desired1: int, reserve0: int, reserve1: int) -> tuple[int, int]:
    optimal1 = desired0 * reserve1 // reserve0
    if optimal1 <= desired1:
        return desired0, optimal1
    return desired1 * reserve0 // reserve1, desired1


def burn_liquidity(state: PoolState, liquidity: int) -> LiquidityResult:
    """Remove liquidity as the contract's `removeLiquidity` does: pro-rata amounts, rounded down.

    Raises:
        AmmError: `INSUFFICIENT_LP_BALANCE` if `liquidity` exceeds the burnable supply (the
            locked `MINIMUM_LIQUIDITY` can never be burned), `INSUFFICIENT_LIQUIDITY_BURNED` if
            either amount would be zero.
    """
    total = state.total_supply
    if liquidity > total - MINIMUM_LIQUIDITY:
        raise AmmError(
            f"cannot burn {liquidity} LP units: at most {total - MINIMUM_LIQUIDITY} are burnable",
            reason=INSUFFICIENT_LP_BALANCE,
        )
    amount_base = liquidity * state.base // total
    amount_quote = liquidity * state.quote // total
    if amount_base <= 0 or amount_quote <= 0:
        raise AmmError(
            f"burning {liquidity} LP units returns ({amount_base}, {amount_quote})",
            reason=INSUFFICIENT_LIQUIDITY_BURNED,
        )
    new_state = PoolState(state.base - amount_base, state.quote - amount_quote, total - liquidity)
    return LiquidityResult(liquidity, amount_base, amount_quote, new_state)


def _checked_state(base: int, quote: int, total_supply: int) -> PoolState:
    if base > MAX_RESERVE or quote > MAX_RESERVE:
        raise AmmError(f"reserves ({base}, {quote}) exceed uint112", reason=OVERFLOW)
    return PoolState(base, quote, total_supply)


# --------------------------------------------------------------------------- arbitrage


def arbitrage_amount_in(
    reserve_in: int, reserve_out: int, ratio_num: int, ratio_den: int, fee_bps: int
) -> int:
    """Return the largest input after which `reserve_out / reserve_in` is still >= the target.

    The target ratio is `ratio_num / ratio_den` (out-reserve per in-reserve, in token units).
    With gamma = 1 - fee, an input d leaves reserves (x + d, x*y / (x + gamma*d)), so the ratio
    hits the target R where gamma*d**2 + (1 + gamma)*x*d + x**2 - x*y/R = 0; this solves that
    quadratic exactly in integers (floor), so the pool never overshoots the target. Returns 0
    (or less) when no input moves the ratio towards the target.
    """
    gamma_bps = BPS - fee_bps
    rn_x = ratio_num * reserve_in
    discriminant = (rn_x * fee_bps) ** 2 + 4 * gamma_bps * BPS * ratio_num * ratio_den * (
        reserve_in * reserve_out
    )
    return (math.isqrt(discriminant) - (BPS + gamma_bps) * rn_x) // (2 * gamma_bps * ratio_num)


def arbitrage_to_price(
    state: PoolState,
    price_quote_per_base: float | _RationalLike,
    fee_bps: int = DEFAULT_FEE_BPS,
    *,
    base_decimals: int = BASE_DECIMALS,
    quote_decimals: int = QUOTE_DECIMALS,
) -> SwapResult | None:
    """Return the arbitrage swap that moves the pool's marginal price to a market price.

    The swap is sized, fee included, so that after it (executed with the real fee math) the
    reserve ratio equals the market price, rounded so that it never overshoots: it stops within
    one token unit of the target. This is "competitive arbitrage": a lone profit-maximising
    arbitrageur would stop at the edge of the fee band (price * (1 ± fee)), but that would leave
    the pool systematically off the market after every move, a bias the agent could exploit.
    Integer math only (the price is converted exactly from its `as_integer_ratio()`), so the
    result is deterministic.

    Args:
        state: the pool before the arbitrage.
        price_quote_per_base: the market price in human units (USD per base token); a float,
            int, `Fraction` or `Decimal`.
        fee_bps: the pool fee.
        base_decimals: decimals of the base token.
        quote_decimals: decimals of the quote token.

    Returns:
        The swap, or None if the pool is already at the price (to within one unit).

    Raises:
        AmmError: if the price is not a positive finite number or the pool is empty.
    """
    try:
        price_num, price_den = price_quote_per_base.as_integer_ratio()
    except (ValueError, OverflowError) as error:  # NaN, infinity
        raise AmmError(
            f"market price is {price_quote_per_base}, expected a finite number > 0"
        ) from error
    if price_num <= 0 or price_den <= 0:
        raise AmmError(f"market price is {price_quote_per_base}, expected a finite number > 0")
    if state.base <= 0 or state.quote <= 0:
        raise AmmError(f"pool {state} is empty", reason=INSUFFICIENT_LIQUIDITY)
    # Market price in token units: quote units per base unit = num_units / den_units.
    num_units = price_num * 10**quote_decimals
    den_units = price_den * 10**base_decimals
    pool_side = state.quote * den_units
    market_side = num_units * state.base
    if pool_side < market_side:  # base is cheap in the pool: buy base with quote
        token_in: Token = "quote"
        amount_in = arbitrage_amount_in(state.quote, state.base, den_units, num_units, fee_bps)
    elif pool_side > market_side:  # base is dear in the pool: sell base for quote
        token_in = "base"
        amount_in = arbitrage_amount_in(state.base, state.quote, num_units, den_units, fee_bps)
    else:
        return None
    if amount_in <= 0:
        return None
    reserve_in, reserve_out = state.reserves_for(token_in)
    if get_amount_out(amount_in, reserve_in, reserve_out, fee_bps) <= 0:
        return None
    return swap_exact_in(state, token_in, amount_in, fee_bps)
