"""The market-coupled pool: a constant-product pool that arbitrage keeps at the market price.

Used by training and fast backtests (the service trades the contract instead). Before each
bar's decision `couple(price)` arbitrages the pool to that bar's market price, so the agent's
own price impact never leaks into the next bar; `trade_to_exposure` then executes the agent's
rebalance with the exact integer math of `agent.dex.amm`. This runs inside `env.step`, so the
hot path is a handful of integer operations and two small object allocations.

Units: balances and amounts are integer token units; `*_quote` values are in quote token
units (micro-USD for a 6-decimal stablecoin). Valuations at the market price (fee and impact
of a trade) are floats; everything that moves a balance is an int.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

from agent.dex.amm import (
    BASE_DECIMALS,
    BPS,
    MAX_FEE_BPS,
    QUOTE_DECIMALS,
    AmmError,
    PoolState,
    SwapResult,
    arbitrage_to_price,
    get_amount_out,
    mint_liquidity,
    to_units,
)
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.config import DexSettings

TradeSide = Literal["buy", "sell", "none"]

_GWEI = 1e-9


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Settings of the simulated pool; human units (USD, gwei) as in config.yaml.

    Attributes:
        liquidity_quote: depth per side in USD: the quote reserve after `reset`.
        fee_bps: swap fee in basis points (30 = 0.30 %, Uniswap V2); at most 1,000, as on-chain.
        gas_price_gwei: gas price.
        gas_per_swap: gas used by one swap.
        native_price_quote: price of the gas token (ETH) in USD.
        min_trade_quote: rebalances worth less than this (USD) are skipped; so are those
            worth less than the gas they would pay.
        base_decimals: decimals of the base token.
        quote_decimals: decimals of the quote token.
    """

    liquidity_quote: float = 10_000_000.0
    fee_bps: int = 30
    gas_price_gwei: float = 20.0
    gas_per_swap: int = 110_000
    native_price_quote: float = 3_000.0
    min_trade_quote: float = 5.0
    base_decimals: int = BASE_DECIMALS
    quote_decimals: int = QUOTE_DECIMALS

    @classmethod
    def from_settings(cls, dex: DexSettings, **overrides: float) -> PoolConfig:
        """Return the pool the `dex` section describes (every field of the section is ours)."""
        values = {f.name: getattr(dex, f.name) for f in fields(cls) if hasattr(dex, f.name)}
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        """Reject values the simulation cannot work with."""
        checks = (
            ("liquidity_quote", self.liquidity_quote > 0 and math.isfinite(self.liquidity_quote)),
            ("fee_bps", 0 <= self.fee_bps <= MAX_FEE_BPS),
            ("gas_price_gwei", 0 <= self.gas_price_gwei < math.inf),
            ("gas_per_swap", self.gas_per_swap >= 0),
            ("native_price_quote", 0 <= self.native_price_quote < math.inf),
            ("min_trade_quote", 0 <= self.min_trade_quote < math.inf),
            ("base_decimals", 0 <= self.base_decimals <= 36),
            ("quote_decimals", 0 <= self.quote_decimals <= 36),
        )
        for name, ok in checks:
            if not ok:
                raise ConfigError(
                    f"pool.{name} is {getattr(self, name)!r}: expected a finite value in range"
                    f" (fee_bps in [0, {MAX_FEE_BPS}], liquidity_quote > 0, others >= 0)"
                )


@dataclass(frozen=True, slots=True)
class TradeResult:
    """One rebalance of the agent's portfolio.

    Attributes:
        side: 'buy' (quote in, base out), 'sell' (base in, quote out) or 'none' (skipped).
        amount_in: paid into the pool, in units of the token sold.
        amount_out: received from the pool, in units of the token bought.
        fee_paid_quote: the pool fee, valued at the market price, in quote units.
        price_impact_quote: value lost against the market price beyond the fee, in quote
            units; `fee_paid_quote + price_impact_quote` is the whole execution cost.
        gas_quote: gas paid, deducted from the quote balance, in quote units.
        base_balance: the agent's base balance after the trade.
        quote_balance: the agent's quote balance after the trade.
    """

    side: TradeSide
    amount_in: int
    amount_out: int
    fee_paid_quote: float
    price_impact_quote: float
    gas_quote: int
    base_balance: int
    quote_balance: int

    @property
    def cost_quote(self) -> float:
        """Total value lost by the trade at the market price: fee + impact + gas."""
        return self.fee_paid_quote + self.price_impact_quote + self.gas_quote


class MarketCoupledPool:
    """A constant-product pool the market drags along, for simulated execution.

    Call `reset(price)` at the start of an episode, `couple(price)` before each bar's
    decision, then `trade_to_exposure(...)` with the same price.
    """

    __slots__ = (
        "_fee_bps",
        "_min_trade_units",
        "_units_per_price",
        "config",
        "gas_cost_quote",
        "state",
    )

    def __init__(self, config: PoolConfig | None = None) -> None:
        """Build an empty pool; `reset` gives it reserves."""
        self.config = config if config is not None else PoolConfig()
        cfg = self.config
        self._fee_bps = cfg.fee_bps
        self.gas_cost_quote: int = to_units(
            cfg.gas_per_swap * cfg.gas_price_gwei * _GWEI * cfg.native_price_quote,
            cfg.quote_decimals,
        )
        """Gas of one swap in quote units, paid from the agent's quote balance."""
        self._min_trade_units = max(
            to_units(cfg.min_trade_quote, cfg.quote_decimals), self.gas_cost_quote, 1
        )
        # market price (USD per base token) * this = quote units per base unit
        self._units_per_price = 10.0 ** (cfg.quote_decimals - cfg.base_decimals)
        self.state: PoolState | None = None
        """The pool reserves; None before `reset`."""

    @property
    def price_quote_per_base(self) -> float:
        """The pool's marginal price (fee excluded) in human units."""
        state = self._require_state()
        return state.price_quote_per_base(self.config.base_decimals, self.config.quote_decimals)

    def reset(self, price: float) -> PoolState:
        """Create fresh reserves at `price`, `liquidity_quote` deep on each side."""
        _check_price(price)
        cfg = self.config
        reserve_quote = to_units(cfg.liquidity_quote, cfg.quote_decimals)
        price_num, price_den = price.as_integer_ratio()
        reserve_base = (reserve_quote * price_den * 10**cfg.base_decimals) // (
            price_num * 10**cfg.quote_decimals
        )
        if reserve_base <= 0:
            raise AmmError(f"price {price} is too high for a pool {cfg.liquidity_quote} deep")
        self.state = mint_liquidity(PoolState(0, 0), reserve_base, reserve_quote).new_state
        return self.state

    def couple(self, price: float) -> SwapResult | None:
        """Arbitrage the pool to the bar's market price; return the arbitrage swap, if any.

        See `agent.dex.amm.arbitrage_to_price`: the pool ends at the market price (within one
        token unit), whatever the agent traded on the previous bar. Arbitrage fees stay in the
        pool, so its depth slowly grows over an episode, as a real V2 pool's does.
        """
        _check_price(price)
        cfg = self.config
        swap = arbitrage_to_price(
            self._require_state(),
            price,
            self._fee_bps,
            base_decimals=cfg.base_decimals,
            quote_decimals=cfg.quote_decimals,
        )
        if swap is not None:
            self.state = swap.new_state
        return swap

    def trade_to_exposure(
        self, base_balance: int, quote_balance: int, target_exposure: float, price: float
    ) -> TradeResult:
        """Swap so that the portfolio, valued at `price`, holds `target_exposure` in base.

        The swap is sized before costs, so the exposure reached falls short of the target by
        the costs (fee, impact, gas) as a fraction of the portfolio. A rebalance worth less
        than `min_trade_quote` or than its gas is skipped (side 'none', nothing paid). A buy
        keeps enough quote to pay the gas; a sell that could not pay its gas is skipped.

        Args:
            base_balance: the agent's base balance, in base units.
            quote_balance: the agent's quote balance, in quote units.
            target_exposure: wanted fraction of portfolio value in base, in [0, 1].
            price: the bar's market price (USD per base token); the pool should be coupled
                to it.

        Returns:
            The trade and the new balances; the pool state is updated.

        Raises:
            AmmError: if the exposure is outside [0, 1], the price is not positive and finite,
                or the pool has not been reset.
        """
        if not 0.0 <= target_exposure <= 1.0:
            raise AmmError(f"target_exposure is {target_exposure}, expected a value in [0, 1]")
        _check_price(price)
        state = self._require_state()
        units_price = price * self._units_per_price  # quote units per base unit
        base_value = base_balance * units_price
        total_value = quote_balance + base_value
        rebalance_value = target_exposure * total_value - base_value
        fee_bps = self._fee_bps
        gas = self.gas_cost_quote
        min_trade = self._min_trade_units
        if rebalance_value >= min_trade:
            amount_in = quote_balance - int((1.0 - target_exposure) * total_value)
            if amount_in > quote_balance - gas:
                amount_in = quote_balance - gas
            if amount_in < min_trade:
                return _no_trade(base_balance, quote_balance)
            amount_out = get_amount_out(amount_in, state.quote, state.base, fee_bps)
            if amount_out <= 0:
                return _no_trade(base_balance, quote_balance)
            self.state = PoolState(
                state.base - amount_out, state.quote + amount_in, state.total_supply
            )
            fee_paid_quote = float(amount_in * fee_bps // BPS)
            return TradeResult(
                "buy",
                amount_in,
                amount_out,
                fee_paid_quote,
                amount_in - amount_out * units_price - fee_paid_quote,
                gas,
                base_balance + amount_out,
                quote_balance - amount_in - gas,
            )
        if -rebalance_value >= min_trade:
            amount_in = base_balance - int(target_exposure * total_value / units_price)
            if amount_in > base_balance:
                amount_in = base_balance
            if amount_in <= 0 or amount_in * units_price < min_trade:
                return _no_trade(base_balance, quote_balance)
            amount_out = get_amount_out(amount_in, state.base, state.quote, fee_bps)
            if amount_out <= 0 or quote_balance + amount_out < gas:
                return _no_trade(base_balance, quote_balance)
            self.state = PoolState(
                state.base + amount_in, state.quote - amount_out, state.total_supply
            )
            fee_paid_quote = (amount_in * fee_bps // BPS) * units_price
            return TradeResult(
                "sell",
                amount_in,
                amount_out,
                fee_paid_quote,
                amount_in * units_price - amount_out - fee_paid_quote,
                gas,
                base_balance - amount_in,
                quote_balance + amount_out - gas,
            )
        return _no_trade(base_balance, quote_balance)

    def _require_state(self) -> PoolState:
        if self.state is None:
            raise AmmError("the pool has no reserves: call reset(price) first")
        return self.state


def _no_trade(base_balance: int, quote_balance: int) -> TradeResult:
    return TradeResult("none", 0, 0, 0.0, 0.0, 0, base_balance, quote_balance)


def _check_price(price: float) -> None:
    if not 0.0 < price < math.inf:
        raise AmmError(f"market price is {price}, expected a finite number > 0")
