"""The rollout kernel: the bar loop compiled with Numba, over arrays prepared once.

One bar is: couple the pool to the bar's close (competitive arbitrage), rebalance the portfolio
towards the target exposure through the V2 pool (fee, price impact, gas, the skip rule for
tiny trades), then value it at the next close (reward, turnover penalty, ruin). This module is
that bar, compiled, and the loops over it:

- `env_bar`: one bar, for `TradingEnv.step` (the policy is outside: SB3 is training it);
- `run_targets`: a whole run of wanted exposures (a strategy alone, a baseline);
- `run_network`: a whole run of a trained MLP policy, its forward pass compiled as well
  (`Network`: the actor's weights packed into flat arrays), so a backtest, a walk-forward
  window or one coalition of a reward epoch never leaves compiled code.

**Arithmetic.** Amounts are token units as in the exact mirror (`agent.dex.amm`: 18-decimal
base, 6-decimal quote), but held in float64: a 10M USD pool holds ~10^21 base units, beyond
int64, so integer units cannot fit. Every integer step of the mirror (V2's floor divisions,
the arbitrage's floor square root, `int()` of a target amount) is the same step here, rounded
down in float64; the arbitrage uses the mirror's quadratic, rearranged so that it does not
cancel. A quote amount below 2^53 units (9 billion USD) is exact; a base amount carries a
relative error of 2^-53 per operation. Measured against the mirror over 100,000 bars, trade for
trade, equity agrees within `EQUITY_RTOL` (tests/unit/env/test_kernel.py); the trade count and
timing agree exactly. The exact integer mirror stays the truth for anything sent on-chain: the
`--onchain` backtest and the service's live bars run it (`agent.env.rollout.execute_target`).

**Compilation** is cached on disk (`cache=True`, next to this file or in NUMBA_CACHE_DIR), so
only the first process after an install pays it; `compile_seconds()` reports what this process
paid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from agent.dex.amm import BPS
from agent.dex.pool import MarketCoupledPool, PoolConfig
from agent.env.rollout import COLUMNS
from agent.env.spec import BASE_SCALE, QUOTE_SCALE

EQUITY_RTOL = 1e-9
"""The documented bound: kernel equity vs the exact mirror's, relative, over 100,000 bars."""

# params (float64[6]): the pool's constants, prepared once per run
P_FEE, P_GAS, P_MIN_TRADE, P_UNITS_PER_PRICE, P_PENALTY, P_RUIN = range(6)
# state (float64[4]): the pool's reserves and the agent's balances, in token units
S_POOL_BASE, S_POOL_QUOTE, S_BASE, S_QUOTE = range(4)
# one bar's trade (float64[TRADE_SIZE]); env_bar adds the next bar's exposure and ruin
T_SIDE, T_AMOUNT_IN, T_AMOUNT_OUT, T_FEE, T_IMPACT, T_GAS, T_NEXT_EXPOSURE, T_RUINED = range(8)
TRADE_SIZE = 8
# run columns: `agent.env.rollout.COLUMNS` ([COLUMNS, decisions], as `RolloutResult` holds them)
# activations and heads of a packed network
ACT_IDENTITY, ACT_TANH, ACT_RELU = 0, 1, 2
HEAD_ARGMAX, HEAD_CLIP, HEAD_TANH_RESCALE = 0, 1, 2
ACTIVATIONS = {"identity": ACT_IDENTITY, "tanh": ACT_TANH, "relu": ACT_RELU}
HEADS = {"argmax": HEAD_ARGMAX, "clip": HEAD_CLIP, "tanh_rescale": HEAD_TANH_RESCALE}
_BPS = float(BPS)
_compile_seconds = 0.0


# --- preparing a run -------------------------------------------------------------------------
def params(pool: PoolConfig, turnover_penalty: float, initial_value_quote: float) -> np.ndarray:
    """Return a run's constants: fee, gas and minimum trade in units as the mirror rounds them."""
    mirror = MarketCoupledPool(pool)
    out = np.zeros(6)
    out[P_FEE] = pool.fee_bps
    out[P_GAS] = mirror.gas_cost_quote
    out[P_MIN_TRADE] = mirror._min_trade_units
    out[P_UNITS_PER_PRICE] = mirror._units_per_price
    out[P_PENALTY] = turnover_penalty
    out[P_RUIN] = 0.01 * initial_value_quote
    return out


def initial_state(pool: PoolConfig, price: float, initial_value_quote: float) -> np.ndarray:
    """Return the state at a run's start: the mirror's fresh pool at `price`, all in quote."""
    mirror = MarketCoupledPool(pool)
    reserves = mirror.reset(price)
    state = np.zeros(4)
    state[S_POOL_BASE] = reserves.base
    state[S_POOL_QUOTE] = reserves.quote
    state[S_QUOTE] = round(initial_value_quote * QUOTE_SCALE)
    return state


@dataclass(frozen=True)
class Network:
    """A trained MLP actor packed for the kernel: layer i maps `sizes[i]` to `sizes[i + 1]`.

    Attributes:
        weights: every layer's weight matrix [inputs, outputs], C order, concatenated (float32).
        biases: every layer's bias, concatenated (float32).
        sizes: int64 [layers + 1]: the observation size, then each layer's output size.
        activations: int64 [layers]: ACT_* of each layer.
        head: HEAD_* (argmax: discrete; clip or tanh_rescale: continuous, to [low, high]).
        low: float32: lower bound of a continuous action.
        high: float32: upper bound of a continuous action.
    """

    weights: np.ndarray
    biases: np.ndarray
    sizes: np.ndarray
    activations: np.ndarray
    head: int
    low: float = 0.0
    high: float = 1.0

    @classmethod
    def pack(
        cls,
        layers: Sequence[tuple[np.ndarray, np.ndarray, str]],
        head: str,
        low: float = 0.0,
        high: float = 1.0,
    ) -> Network:
        """Pack (weight [inputs, outputs], bias, activation name) layers and a head name."""
        sizes = [layers[0][0].shape[0]] + [w.shape[1] for w, _, _ in layers]
        return cls(
            weights=np.concatenate([np.asarray(w, np.float32).ravel() for w, _, _ in layers]),
            biases=np.concatenate([np.asarray(b, np.float32).ravel() for _, b, _ in layers]),
            sizes=np.asarray(sizes, dtype=np.int64),
            activations=np.asarray([ACTIVATIONS[a] for _, _, a in layers], dtype=np.int64),
            head=HEADS[head],
            low=float(low),
            high=float(high),
        )

    @property
    def n_inputs(self) -> int:
        return int(self.sizes[0])

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """Return the deterministic action of each observation row (SB3's `predict` values)."""
        obs = np.ascontiguousarray(observations, dtype=np.float32).reshape(-1, self.n_inputs)
        out = np.empty(len(obs), dtype=np.float64)
        ensure_compiled()
        _actions_batch(
            obs, self.weights, self.biases, self.sizes, self.activations, self.head,
            self.low, self.high, out,
        )  # fmt: skip
        return out


def compile_seconds() -> float:
    """Seconds this process spent compiling the kernel, or loading it from the disk cache."""
    return _compile_seconds


def ensure_compiled() -> float:
    """Compile (or load) every kernel function for the types runs use; once per process.

    Returns the seconds it took (0 after the first call). Runs call it first, so the compile
    time is reported apart from a run's own time (`compile_seconds`).
    """
    global _compile_seconds
    if _compile_seconds > 0.0:
        return 0.0
    started = time.perf_counter()
    pool = PoolConfig()
    close = np.array([100.0, 101.0, 99.0, 100.0])
    p = params(pool, 0.0, 10_000.0)
    cols = np.zeros((len(COLUMNS), 3))
    trade = np.zeros(TRADE_SIZE)
    state = initial_state(pool, 100.0, 10_000.0)
    env_bar(state, p, close, 0, 0.5, cols, 0, trade)
    exposure_of(state, 100.0)
    run_targets(initial_state(pool, 100.0, 10_000.0), p, close, np.ones(4), 0.0, 0, 3, cols)
    features = np.zeros((4, 3), dtype=np.float32)
    signals = np.zeros((4, 1), dtype=np.float32)
    mask = np.ones((4, 1), dtype=bool)
    net = Network.pack([(np.zeros((6, 2), np.float32), np.zeros(2, np.float32), "tanh")], "argmax")
    run_network(
        initial_state(pool, 100.0, 10_000.0), p, close, features, signals, mask,
        np.ones(1, dtype=bool), 1, np.array([0.0, 1.0]), net.weights, net.biases, net.sizes,
        net.activations, net.head, net.low, net.high, 0, 3, cols,
        np.zeros((0, 6), dtype=np.float32),
    )  # fmt: skip
    _actions_batch(
        np.zeros((1, 6), np.float32), net.weights, net.biases, net.sizes, net.activations,
        net.head, net.low, net.high, np.zeros(1),
    )  # fmt: skip
    _compile_seconds = time.perf_counter() - started
    return _compile_seconds


# --- one bar ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _amount_out(amount_in: float, reserve_in: float, reserve_out: float, fee: float) -> float:
    with_fee = amount_in * (_BPS - fee)
    return np.floor(with_fee * reserve_out / (reserve_in * _BPS + with_fee))


@njit(cache=True, nogil=True)
def _couple(state: np.ndarray, p: np.ndarray, price: float) -> None:
    """Arbitrage the pool to `price` as `agent.dex.amm.arbitrage_to_price` does."""
    fee = p[P_FEE]
    gamma = _BPS - fee
    units_price = price * p[P_UNITS_PER_PRICE]
    pool_base, pool_quote = state[S_POOL_BASE], state[S_POOL_QUOTE]
    buy = pool_quote < units_price * pool_base
    if buy:  # base is cheap in the pool: buy it with quote
        x, y = pool_quote, pool_base
        gap = pool_base * units_price - pool_quote  # y / R - x, with R = 1 / units_price
        y_over_r = pool_base * units_price
    elif pool_quote > units_price * pool_base:  # base is dear in the pool: sell base
        x, y = pool_base, pool_quote
        y_over_r = pool_quote / units_price
        gap = y_over_r - pool_base
    else:
        return
    # d = (sqrt(A) - B) / (2 gamma), rearranged: 2 BPS x (y/R - x) / (sqrt(A) + B)
    root = math.sqrt((x * fee) ** 2 + 4.0 * gamma * _BPS * x * y_over_r)
    amount_in = np.floor(2.0 * _BPS * x * gap / (root + (_BPS + gamma) * x))
    if amount_in <= 0.0:
        return
    amount_out = _amount_out(amount_in, x, y, fee)
    if amount_out <= 0.0:
        return
    if buy:
        state[S_POOL_QUOTE] = pool_quote + amount_in
        state[S_POOL_BASE] = pool_base - amount_out
    else:
        state[S_POOL_BASE] = pool_base + amount_in
        state[S_POOL_QUOTE] = pool_quote - amount_out


@njit(cache=True, nogil=True)
def _trade(state: np.ndarray, p: np.ndarray, target: float, price: float, out: np.ndarray) -> None:
    """Rebalance towards `target` as `MarketCoupledPool.trade_to_exposure` does; fill `out`."""
    for i in range(6):
        out[i] = 0.0
    fee = p[P_FEE]
    gas = p[P_GAS]
    min_trade = p[P_MIN_TRADE]
    units_price = price * p[P_UNITS_PER_PRICE]
    base, quote = state[S_BASE], state[S_QUOTE]
    pool_base, pool_quote = state[S_POOL_BASE], state[S_POOL_QUOTE]
    base_value = base * units_price
    total = quote + base_value
    rebalance = target * total - base_value
    if rebalance >= min_trade:
        amount_in = quote - np.floor((1.0 - target) * total)
        if amount_in > quote - gas:
            amount_in = quote - gas
        if amount_in < min_trade:
            return
        amount_out = _amount_out(amount_in, pool_quote, pool_base, fee)
        if amount_out <= 0.0:
            return
        state[S_POOL_BASE] = pool_base - amount_out
        state[S_POOL_QUOTE] = pool_quote + amount_in
        fee_paid = np.floor(amount_in * fee / _BPS)
        out[T_SIDE] = 1.0
        out[T_IMPACT] = amount_in - amount_out * units_price - fee_paid
        state[S_BASE] = base + amount_out
        state[S_QUOTE] = quote - amount_in - gas
    elif -rebalance >= min_trade:
        amount_in = base - np.floor(target * total / units_price)
        if amount_in > base:
            amount_in = base
        if amount_in <= 0.0 or amount_in * units_price < min_trade:
            return
        amount_out = _amount_out(amount_in, pool_base, pool_quote, fee)
        if amount_out <= 0.0 or quote + amount_out < gas:
            return
        state[S_POOL_BASE] = pool_base + amount_in
        state[S_POOL_QUOTE] = pool_quote - amount_out
        fee_paid = np.floor(amount_in * fee / _BPS) * units_price
        out[T_SIDE] = -1.0
        out[T_IMPACT] = amount_in * units_price - amount_out - fee_paid
        state[S_BASE] = base - amount_in
        state[S_QUOTE] = quote + amount_out - gas
    else:
        return
    out[T_AMOUNT_IN] = amount_in
    out[T_AMOUNT_OUT] = amount_out
    out[T_FEE] = fee_paid
    out[T_GAS] = gas


@njit(cache=True, nogil=True)
def _value(state: np.ndarray, price: float) -> float:
    return state[S_BASE] / BASE_SCALE * price + state[S_QUOTE] / QUOTE_SCALE


@njit(cache=True, nogil=True)
def exposure_of(state: np.ndarray, price: float) -> float:
    """The portfolio's exposure at `price` (the fraction of its value held in base)."""
    held = state[S_BASE] / BASE_SCALE * price
    value = held + state[S_QUOTE] / QUOTE_SCALE
    return held / value if value > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _bar(
    state: np.ndarray,
    p: np.ndarray,
    price: float,
    next_price: float,
    target: float,
    trade: np.ndarray,
    cols: np.ndarray,
    i: int,
) -> bool:
    """Decide one bar: couple, trade, value at the next close; fill column i of `cols`
    ([COLUMNS, decisions]: each column of a result is a contiguous row here).

    Returns whether the portfolio is ruined (the run stops).
    """
    base_before = state[S_BASE]
    value_before = _value(state, price)
    exposure_before = exposure_of(state, price)
    _couple(state, p, price)
    _trade(state, p, target, price, trade)
    value_after = _value(state, next_price)
    reward = math.log(value_after / value_before) if value_after > 0.0 else -10.0
    if trade[T_SIDE] != 0.0:
        reward -= p[P_PENALTY] * abs(target - exposure_before)
    held = state[S_BASE] / BASE_SCALE * price
    value_now = held + state[S_QUOTE] / QUOTE_SCALE
    cols[0, i] = value_after
    cols[1, i] = target
    cols[2, i] = exposure_before
    cols[3, i] = held / value_now if value_now > 0.0 else 0.0
    cols[4, i] = trade[T_SIDE]
    cols[5, i] = abs(state[S_BASE] - base_before) / BASE_SCALE * price
    cols[6, i] = trade[T_FEE] / QUOTE_SCALE
    cols[7, i] = trade[T_IMPACT] / QUOTE_SCALE
    cols[8, i] = trade[T_GAS] / QUOTE_SCALE
    cols[9, i] = state[S_BASE] / BASE_SCALE
    cols[10, i] = state[S_QUOTE] / QUOTE_SCALE
    cols[11, i] = reward
    return value_after <= p[P_RUIN]


@njit(cache=True, nogil=True)
def env_bar(
    state: np.ndarray,
    p: np.ndarray,
    close: np.ndarray,
    t: int,
    target: float,
    cols: np.ndarray,
    i: int,
    trade: np.ndarray,
) -> float:
    """One environment step at bar t into `cols[:, i]`; returns the reward."""
    ruined = _bar(state, p, close[t], close[t + 1], target, trade, cols, i)
    trade[T_NEXT_EXPOSURE] = exposure_of(state, close[t + 1])
    trade[T_RUINED] = 1.0 if ruined else 0.0
    return cols[11, i]


# --- whole runs -----------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def run_targets(
    state: np.ndarray,
    p: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    band: float,
    start: int,
    end: int,
    cols: np.ndarray,
) -> int:
    """Run wanted exposures over bars [start, end); NaN holds, `band` skips small changes.

    Fills `cols[:, i]` for decision start + i; returns the decisions made (fewer if ruined).
    """
    trade = np.zeros(TRADE_SIZE)
    for t in range(start, end):
        price = close[t]
        target = targets[t]
        if band > 0.0 or target != target:
            now = exposure_of(state, price)
            if target != target or abs(target - now) < band:
                target = min(1.0, now)
        target = min(1.0, max(0.0, target))
        if _bar(state, p, price, close[t + 1], target, trade, cols, t - start):
            return t - start + 1
    return end - start


@njit(cache=True, nogil=True)
def _tanh32(v: float) -> float:
    """tanh in float64 (one exp), for a float32 result: within one float32 rounding of SB3's.

    libm's tanhf costs three times as much, and only the float32 rounding is kept anyway.
    """
    a = min(abs(v), 20.0)
    if a < 1e-4:
        r = a - a * a * a / 3.0
    else:
        e = math.exp(-2.0 * a)
        r = (1.0 - e) / (1.0 + e)
    return r if v >= 0.0 else -r


@njit(cache=True, nogil=True)
def _forward(
    x: np.ndarray,
    weights: np.ndarray,
    biases: np.ndarray,
    sizes: np.ndarray,
    activations: np.ndarray,
    head: int,
    low: float,
    high: float,
    scratch_a: np.ndarray,
    scratch_b: np.ndarray,
) -> float:
    """Return the deterministic action of one observation: an index, or a continuous value.

    Each layer accumulates in float64 and rounds its output to float32, as SB3's float32
    network does (the order of the sums differs; tests bound the difference).
    """
    current = scratch_a
    following = scratch_b
    n_in = sizes[0]
    for i in range(n_in):
        current[i] = x[i]
    w_at = 0
    b_at = 0
    for layer in range(len(activations)):
        n_out = sizes[layer + 1]
        acc = following[:n_out]
        bias = biases[b_at : b_at + n_out]
        for j in range(n_out):
            acc[j] = bias[j]
        for i in range(n_in):
            xi = current[i]
            row = weights[w_at + i * n_out : w_at + (i + 1) * n_out]
            for j in range(n_out):
                acc[j] += xi * row[j]
        act = activations[layer]
        if act == ACT_TANH:
            for j in range(n_out):
                acc[j] = np.float32(_tanh32(np.float64(np.float32(acc[j]))))
        elif act == ACT_RELU:
            for j in range(n_out):
                v = np.float32(acc[j])
                acc[j] = v if v > 0.0 else 0.0
        else:
            for j in range(n_out):
                acc[j] = np.float32(acc[j])
        w_at += n_in * n_out
        b_at += n_out
        n_in = n_out
        current, following = following, current
    if head == HEAD_ARGMAX:
        best = 0
        for j in range(1, n_in):
            if current[j] > current[best]:
                best = j
        return float(best)
    raw = np.float32(current[0])
    if head == HEAD_CLIP:
        return float(min(max(raw, np.float32(low)), np.float32(high)))
    squashed = np.float32(_tanh32(np.float64(raw)))
    return float(
        np.float32(low)
        + np.float32(0.5) * (squashed + np.float32(1.0)) * (np.float32(high) - np.float32(low))
    )


@njit(cache=True, nogil=True)
def _actions_batch(
    obs: np.ndarray,
    weights: np.ndarray,
    biases: np.ndarray,
    sizes: np.ndarray,
    activations: np.ndarray,
    head: int,
    low: float,
    high: float,
    out: np.ndarray,
) -> None:
    width = sizes.max()
    scratch_a = np.zeros(width, dtype=np.float64)
    scratch_b = np.zeros(width, dtype=np.float64)
    for r in range(obs.shape[0]):
        out[r] = _forward(
            obs[r], weights, biases, sizes, activations, head, low, high, scratch_a, scratch_b
        )


@njit(cache=True, nogil=True)
def observe_into(
    x: np.ndarray,
    features: np.ndarray,
    signals: np.ndarray,
    mask: np.ndarray,
    visible: np.ndarray,
    t: int,
    lookback: int,
    exposure_now: float,
) -> None:
    """Write the observation at bar t into `x` (the `PolicySpec.observe` layout, float32)."""
    n_features = features.shape[1]
    k = 0
    for row in range(t - lookback + 1, t + 1):
        for f in range(n_features):
            x[k] = features[row, f]
            k += 1
    n = signals.shape[1]
    for s in range(n):
        shown = mask[t, s] and visible[s]
        x[k + s] = signals[t, s] if shown else np.float32(0.0)
        x[k + n + s] = np.float32(1.0) if shown else np.float32(0.0)
    x[k + 2 * n] = np.float32(exposure_now)


@njit(cache=True, nogil=True)
def run_network(
    state: np.ndarray,
    p: np.ndarray,
    close: np.ndarray,
    features: np.ndarray,
    signals: np.ndarray,
    mask: np.ndarray,
    visible: np.ndarray,
    lookback: int,
    levels: np.ndarray,
    weights: np.ndarray,
    biases: np.ndarray,
    sizes: np.ndarray,
    activations: np.ndarray,
    head: int,
    low: float,
    high: float,
    start: int,
    end: int,
    cols: np.ndarray,
    observations: np.ndarray,
) -> int:
    """Run a packed MLP policy over bars [start, end): observe, act, decide, bar by bar.

    A discrete action picks `levels[action]`; a continuous one is clipped to [0, 1]. Fills
    `cols` and, when it has rows, `observations`; returns the decisions made.
    """
    trade = np.zeros(TRADE_SIZE)
    width = sizes.max()
    scratch_a = np.zeros(width, dtype=np.float64)
    scratch_b = np.zeros(width, dtype=np.float64)
    x = np.zeros(sizes[0], dtype=np.float32)
    keep = observations.shape[0] > 0
    for t in range(start, end):
        price = close[t]
        observe_into(x, features, signals, mask, visible, t, lookback, exposure_of(state, price))
        if keep:
            observations[t - start, :] = x
        action = _forward(
            x, weights, biases, sizes, activations, head, low, high, scratch_a, scratch_b
        )
        target = levels[int(action)] if head == HEAD_ARGMAX else min(1.0, max(0.0, action))
        if _bar(state, p, price, close[t + 1], target, trade, cols, t - start):
            return t - start + 1
    return end - start
