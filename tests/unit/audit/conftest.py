"""Decision records for the audit tests: a fixed sample, varied fields, a hypothesis strategy.

Imported by the integration and e2e audit tests too (`from tests.unit.audit.conftest import …`).
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from agent.audit.record import (
    ZERO_HASH,
    DecisionFields,
    DecisionRecord,
    ExecutedTrade,
    observation_digest,
    text_id,
)

MARKET = "synthetic:SYN/USD:1h"
MODEL_ID = text_id("ppo-seed0")
CONFIG_HASH = "0x" + "c0" * 32
STRATEGIES = ("ma-crossover", "rsi-reversion", "macd")


def sample_record() -> DecisionRecord:
    """The fixed record of the golden vector (every field non-trivial)."""
    return DecisionRecord(
        seq=7,
        bar_time_ms=1_704_067_200_000,
        market=MARKET,
        model_id=MODEL_ID,
        config_hash=CONFIG_HASH,
        observation_digest=observation_digest([0.5, -1.25, 3.0]),
        strategy_names=STRATEGIES,
        signals_e9=(250_000_000, -1_000_000_000, 0),
        masks=(True, True, False),
        target_exposure_e9=750_000_000,
        trade=ExecutedTrade(
            side="buy",
            amount_in=1_234_567_890,
            amount_out=12_345_678_901_234_567_890,
            fee=3_703_703,
            gas_used=98_765,
            tx_hash="0x" + "ab" * 32,
        ),
        prev_hash="0x" + "11" * 32,
    )


def sample_fields(i: int) -> DecisionFields:
    """The decision at bar `i` of a made-up run: varied signals, exposures and trades."""
    side = ("none", "buy", "sell")[i % 3]
    trade = (
        ExecutedTrade()
        if side == "none"
        else ExecutedTrade(side, 10**6 * (i + 1), 10**15 * (i + 2), 3_000 * (i + 1), 110_000)
    )
    return DecisionFields(
        bar_time_ms=1_704_067_200_000 + i * 3_600_000,
        market=MARKET,
        model_id=MODEL_ID,
        config_hash=CONFIG_HASH,
        observation_digest=observation_digest([float(i), i / 7.0, -1.0]),
        strategy_names=STRATEGIES,
        signals=[((i * 37) % 200 - 100) / 100.0, -0.5, float("nan")],
        masks=[True, i % 2 == 0, False],
        target_exposure=(i % 5) / 4.0,
        trade=trade,
    )


@pytest.fixture
def record() -> DecisionRecord:
    return sample_record()


_bytes32 = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
_uint256 = st.integers(min_value=0, max_value=2**256 - 1)


@st.composite
def trades(draw: st.DrawFn) -> ExecutedTrade:
    side = draw(st.sampled_from(["none", "buy", "sell"]))
    if side == "none":
        return ExecutedTrade(gas_used=draw(st.integers(0, 2**64 - 1)))
    return ExecutedTrade(
        side=side,
        amount_in=draw(_uint256),
        amount_out=draw(_uint256),
        fee=draw(_uint256),
        gas_used=draw(st.integers(0, 2**64 - 1)),
        tx_hash=draw(st.one_of(st.just(ZERO_HASH), _bytes32)),
    )


@st.composite
def records(draw: st.DrawFn) -> DecisionRecord:
    """Any valid DecisionRecord (unicode names, extreme integers, empty strategy lists)."""
    n = draw(st.integers(0, 6))
    masks = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    signals = [draw(st.integers(-(10**9), 10**9)) if m else 0 for m in masks]
    return DecisionRecord(
        seq=draw(st.integers(0, 2**64 - 1)),
        bar_time_ms=draw(st.integers(-(2**63), 2**63 - 1)),
        market=draw(st.text(min_size=1, max_size=40)),
        model_id=draw(_bytes32),
        config_hash=draw(_bytes32),
        observation_digest=draw(_bytes32),
        strategy_names=tuple(draw(st.lists(st.text(max_size=20), min_size=n, max_size=n))),
        signals_e9=tuple(signals),
        masks=tuple(masks),
        target_exposure_e9=draw(st.integers(0, 10**9)),
        trade=draw(trades()),
        prev_hash=draw(_bytes32),
    )
