"""The per-bar protocol as data: the outcome, the intent's record, and the exactly-once keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.audit.record import decision_hash
from agent.dex.pool import MarketCoupledPool, PoolConfig
from agent.errors import StoreError
from agent.service import ledger
from agent.service.decision import (
    Genesis,
    carried_state,
    decide_outcome,
    decision_fields,
    fields_from_json,
)
from agent.service.replica import BarPlan
from agent.store import Store

GENESIS = Genesis("replay-synthetic:SYN/USD:1h", 0, 300, 10_000_000_000, (0, 0, 0))


def fresh_state() -> dict[str, object]:
    pool = MarketCoupledPool(PoolConfig())
    state = pool.reset(100.0)
    genesis = Genesis(GENESIS.market, 0, 300, GENESIS.initial_quote, (state.base, state.quote, 0))
    return carried_state(None, genesis)


def test_the_outcome_is_the_pool_mirror_coupled_then_traded() -> None:
    state = fresh_state()
    outcome = decide_outcome(MarketCoupledPool(PoolConfig()), state, 93.5, 0.75)

    by_hand = MarketCoupledPool(PoolConfig())
    by_hand.reset(100.0)
    arbitrage = by_hand.couple(93.5)
    coupled = by_hand.state
    trade = by_hand.trade_to_exposure(0, 10_000_000_000, 0.75, 93.5)
    assert arbitrage is not None and coupled is not None and by_hand.state is not None
    assert outcome["pool_coupled"][:2] == [coupled.base, coupled.quote]
    assert outcome["pool_after"][:2] == [by_hand.state.base, by_hand.state.quote]
    assert outcome["trade"]["side"] == trade.side == "buy"
    assert outcome["balances"] == [trade.base_balance, trade.quote_balance]
    assert outcome["gas_total"] == trade.gas_quote > 0
    # the pool was dear (100 > 93.5): the operator sold base into it
    assert arbitrage.token_in == "base"
    assert outcome["arbitrage_flow"] == [-arbitrage.amount_in, arbitrage.amount_out]


def test_the_next_bar_starts_from_the_last_outcome() -> None:
    first = decide_outcome(MarketCoupledPool(PoolConfig()), fresh_state(), 101.0, 1.0)
    row = ledger.TickRow("m", 1, "decided", 0, None, first, 0)
    carried = carried_state(row, GENESIS)
    assert carried["pool"] == first["pool_after"]
    assert (carried["base"], carried["quote"]) == tuple(first["balances"])
    second = decide_outcome(MarketCoupledPool(PoolConfig()), carried, 101.0, 1.0)
    assert second["arbitrage_flow"] != first["arbitrage_flow"]  # the trade moved the pool
    assert second["gas_total"] == first["gas_total"]  # already fully invested: no trade


def test_the_intent_rebuilds_the_identical_decision_record() -> None:
    outcome = decide_outcome(MarketCoupledPool(PoolConfig()), fresh_state(), 99.0, 0.5)
    fields = decision_fields(
        bar_ms=1_700_000_000_000,
        market="replay-synthetic:SYN/USD:1h",
        model_id="0x" + "11" * 32,
        config_hash="0x" + "22" * 32,
        observation=np.linspace(-1, 1, 55, dtype=np.float32),
        names=("a", "b"),
        signals=np.array([0.1 + 0.2, -0.7]),
        masks=np.array([True, False]),
        target=0.5,
        trade=outcome["trade"],
        fee_bps=30,
        gas_per_swap=110_000,
    )
    import json

    stored = json.loads(json.dumps(fields))  # the intent goes through JSON in the store
    once = fields_from_json(fields).to_record(7, "0x" + "33" * 32)
    again = fields_from_json(stored).to_record(7, "0x" + "33" * 32)
    assert decision_hash(once) == decision_hash(again)
    assert once.masks == (True, False) and once.signals_e9[1] == 0
    assert (
        once.trade.side == "buy" and once.trade.fee == outcome["trade"]["amount_in"] * 30 // 10_000
    )


def test_a_bar_plan_replays_the_recorded_swaps() -> None:
    outcome = decide_outcome(MarketCoupledPool(PoolConfig()), fresh_state(), 120.0, 0.25)
    plan = BarPlan.from_outcome(5, outcome)
    assert plan.arbitrage is not None and plan.arbitrage.token_in == "quote"
    assert plan.trade is not None and plan.trade.token_in == "quote"
    assert plan.pool_after == tuple(outcome["pool_after"][:2])
    assert plan.trader_after == (
        outcome["balances"][0],
        outcome["balances"][1] + outcome["gas_total"],
    )


def test_a_bar_has_one_row_whatever_happens_to_it(tmp_path: Path) -> None:
    with Store(tmp_path / "agora.db") as store:
        ledger.record_intent(store, "m", 1_000, {"trade": {"side": "none"}})
        with pytest.raises(StoreError, match="bar 1000"):
            ledger.record_intent(store, "m", 1_000, {"trade": {"side": "none"}})
        assert not ledger.record_skip(store, "m", 1_000, "late")
        assert ledger.record_skip(store, "m", 2_000, "bad candle")
        assert [t.bar_time_ms for t in ledger.intents(store, "m")] == [1_000]
        ledger.mark_decided(store, "m", 1_000, 0)
        assert ledger.intents(store, "m") == []
        assert ledger.tick_counts(store, "m") == {"decided": 1, "skipped": 1, "trades": 0}
        last = ledger.last_tick(store, "m")
        assert last is not None and (last.bar_time_ms, last.status) == (2_000, "skipped")
