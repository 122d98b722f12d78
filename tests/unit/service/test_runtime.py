"""The per-bar protocol as data: the outcome, the intent's record, and the exactly-once keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.audit.record import decision_hash
from agent.dex.pool import MarketCoupledPool, PoolConfig
from agent.env.spec import exposure
from agent.errors import StoreError
from agent.service import ledger
from agent.service.decision import (
    BarArbitrage,
    BarOutcome,
    Genesis,
    carried_state,
    decide_outcome,
    decision_fields,
    fields_from_json,
    fields_to_json,
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
    assert outcome.pool_coupled[:2] == (coupled.base, coupled.quote)
    assert outcome.pool_after[:2] == (by_hand.state.base, by_hand.state.quote)
    assert outcome.trade.side == trade.side == "buy"
    assert outcome.balances == (trade.base_balance, trade.quote_balance)
    assert outcome.gas_total == trade.gas_quote > 0
    # the pool was dear (100 > 93.5): the operator sold base into it
    assert arbitrage.token_in == "base"
    assert outcome.arbitrage == BarArbitrage("base", arbitrage.amount_in, arbitrage.amount_out)
    assert outcome.arbitrage_flow == (-arbitrage.amount_in, arbitrage.amount_out)
    assert outcome.exposure_before == 0.0 and outcome.fields is None


def test_the_next_bar_starts_from_the_last_outcome() -> None:
    first = decide_outcome(MarketCoupledPool(PoolConfig()), fresh_state(), 101.0, 1.0)
    row = ledger.TickRow("m", 1, "decided", 0, None, first, 0)
    carried = carried_state(row, GENESIS)
    assert carried["pool"] == list(first.pool_after)
    assert (carried["base"], carried["quote"]) == first.balances
    second = decide_outcome(MarketCoupledPool(PoolConfig()), carried, 101.0, 1.0)
    assert second.arbitrage_flow != first.arbitrage_flow  # the trade moved the pool
    assert second.gas_total == first.gas_total  # already fully invested: no trade
    assert second.exposure_before == first.exposure_after


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
        trade=outcome.trade,
        fee_bps=30,
        gas_per_swap=110_000,
    )
    stored = json.loads(json.dumps(fields_to_json(fields)))  # the intent goes through JSON
    assert fields_from_json(stored) == fields
    once = fields.to_record(7, "0x" + "33" * 32)
    again = fields_from_json(stored).to_record(7, "0x" + "33" * 32)
    assert decision_hash(once) == decision_hash(again)
    assert once.masks == (True, False) and once.signals_e9[1] == 0
    assert once.trade.side == "buy" and once.trade.fee == outcome.trade.amount_in * 30 // 10_000


def test_a_bar_plan_replays_the_recorded_swaps() -> None:
    outcome = decide_outcome(MarketCoupledPool(PoolConfig()), fresh_state(), 120.0, 0.25)
    plan = BarPlan.from_outcome(5, outcome)
    assert plan.arbitrage is not None and plan.arbitrage.token_in == "quote"
    assert plan.trade is not None and plan.trade.token_in == "quote"
    assert plan.pool_after == outcome.pool_after[:2]
    assert plan.trader_after == (outcome.balances[0], outcome.balances[1] + outcome.gas_total)


def test_a_bar_has_one_row_whatever_happens_to_it(tmp_path: Path) -> None:
    outcome = decide_outcome(MarketCoupledPool(PoolConfig()), fresh_state(), 100.0, 0.0)
    assert outcome.trade.side == "none"
    with Store(tmp_path / "agora.db") as store:
        ledger.record_intent(store, "m", 1_000, outcome)
        with pytest.raises(StoreError, match="bar 1000"):
            ledger.record_intent(store, "m", 1_000, outcome)
        assert not ledger.record_skip(store, "m", 1_000, "late")
        assert ledger.record_skip(store, "m", 2_000, "bad candle")
        assert [t.bar_time_ms for t in ledger.intents(store, "m")] == [1_000]
        ledger.mark_decided(store, "m", 1_000, 0)
        assert ledger.intents(store, "m") == []
        assert ledger.tick_counts(store, "m") == {"decided": 1, "skipped": 1, "trades": 0}
        last = ledger.last_tick(store, "m")
        assert last is not None and (last.bar_time_ms, last.status) == (2_000, "skipped")


# What `decide_bar` stored for these decisions before outcomes were dataclasses: existing
# databases hold rows like these, so the layout and every byte must stay.
STORED_ROW = (
    '{"arbitrage":{"amount_in":955885071547,"amount_out":8700957737100712959137,'
    '"token_in":"quote"},"arbitrage_flow":[8700957737100712959137,-955885071547],'
    '"balances":[20766108975030626031,7493400000],"exposure_after":0.24955933445451337,'
    '"exposure_before":0.0,"fields":{"bar_time_ms":1700000000000,"config_hash":'
    '"0x2222222222222222222222222222222222222222222222222222222222222222","market":'
    '"replay-synthetic:SYN/USD:1h","masks":[true,false],"model_id":'
    '"0x1111111111111111111111111111111111111111111111111111111111111111",'
    '"observation_digest":"0x7673cc8414bc83d5faa5febf4a8abf54ae19f663689bba5440abc2cb96cc34be",'
    '"signals":[0.30000000000000004,0.0],"strategy_names":["a","b"],"target_exposure":0.25,'
    '"trade":{"amount_in":"2500000000","amount_out":"20766108975030626031","fee":"7500000",'
    '"gas_used":110000,"side":"buy","tx_hash":'
    '"0x0000000000000000000000000000000000000000000000000000000000000000"}},'
    '"gas_total":6600000,"pool_after":[91278276153924256414832,10958385071547,0],'
    '"pool_before":[100000000000000000000000,10000000000000,0],'
    '"pool_coupled":[91299042262899287040863,10955885071547,0],"price":120.0,"target":0.25,'
    '"trade":{"amount_in":2500000000,"amount_out":20766108975030626031,"gas_quote":6600000,'
    '"side":"buy"},"value_quote":9985.333077003674}'
)
SOLD_OUTCOME = (  # the next bar's outcome (before the service added its fields)
    '{"arbitrage":{"amount_in":14166064414837470541540,"amount_out":1468394420358,'
    '"token_in":"base"},"arbitrage_flow":[-5465106677736757582403,512509348811],'
    '"balances":[0,9349777166],"exposure_after":0.0,"gas_total":13200000,'
    '"pool_after":[105465106677736757582403,9488127674023,0],'
    '"pool_before":[91278276153924256414832,10958385071547,0],'
    '"pool_coupled":[105444340568761726956372,9489990651189,0],"price":90.0,"target":0.0,'
    '"trade":{"amount_in":20766108975030626031,"amount_out":1862977166,"gas_quote":6600000,'
    '"side":"sell"},"value_quote":9349.777166}'
)


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def decided_row() -> BarOutcome:
    outcome = decide_outcome(MarketCoupledPool(PoolConfig()), fresh_state(), 120.0, 0.25)
    fields = decision_fields(
        bar_ms=1_700_000_000_000,
        market=GENESIS.market,
        model_id="0x" + "11" * 32,
        config_hash="0x" + "22" * 32,
        observation=np.linspace(-1, 1, 55, dtype=np.float32),
        names=("a", "b"),
        signals=np.array([0.1 + 0.2, -0.7]),
        masks=np.array([True, False]),
        target=0.25,
        trade=outcome.trade,
        fee_bps=30,
        gas_per_swap=110_000,
    )
    return dataclasses.replace(outcome, fields=fields)


def test_the_intent_is_stored_byte_for_byte_as_existing_rows_and_read_back_equal(
    tmp_path: Path,
) -> None:
    outcome = decided_row()
    with Store(tmp_path / "agora.db") as store:
        ledger.record_intent(store, "m", 1_000, outcome)
        (stored,) = store.db.execute("SELECT outcome FROM service_ticks").fetchone()
        assert stored == STORED_ROW
        row = ledger.last_decision(store, "m")
        assert row is not None and row.outcome == outcome
        assert ledger.tick_counts(store, "m")["trades"] == 1  # json_extract($.trade.side)
    sold = decide_outcome(
        MarketCoupledPool(PoolConfig()),
        carried_state(ledger.TickRow("m", 1, "decided", 0, None, outcome, 0), GENESIS),
        90.0,
        0.0,
    )
    assert sold.trade.side == "sell" and sold.arbitrage is not None
    data = sold.to_json_data()
    assert data.pop("exposure_before") == exposure(*outcome.balances, 90.0)
    assert _dumps(data) == SOLD_OUTCOME


def test_an_outcome_round_trips_with_and_without_the_observation(tmp_path: Path) -> None:
    outcome = decided_row()
    assert outcome.observation is None and "observation" not in outcome.to_json_data()
    observation = np.linspace(-1, 1, 55, dtype=np.float32) / np.float32(3)
    seen = dataclasses.replace(outcome, observation=tuple(observation.tolist()))
    data = json.loads(_dumps(seen.to_json_data()))
    assert data["observation"] == observation.tolist()
    back = BarOutcome.from_json_data(data)
    assert back == seen
    assert np.asarray(back.observation, dtype=np.float32).tobytes() == observation.tobytes()
    del data["observation"]
    assert _dumps(data) == STORED_ROW  # everything else as before
    assert BarOutcome.from_json_data(data) == outcome
    with Store(tmp_path / "agora.db") as store:
        ledger.record_intent(store, "m", 1_000, seen)
        ledger.record_intent(store, "m", 2_000, outcome)
        rows = ledger.decisions_after(store, "m", None)
    assert [r.outcome for r in rows] == [seen, outcome]


def test_a_stored_row_parses_to_typed_values_and_dumps_to_the_same_bytes() -> None:
    outcome = BarOutcome.from_json_data(json.loads(STORED_ROW))
    assert _dumps(outcome.to_json_data()) == STORED_ROW
    assert outcome.pool_after == (91278276153924256414832, 10958385071547, 0)
    assert outcome.arbitrage == BarArbitrage("quote", 955885071547, 8700957737100712959137)
    assert outcome.trade.side == "buy" and outcome.fields is not None
    assert outcome.fields.trade.fee == 7_500_000 and outcome.fields.masks == (True, False)
    assert all(type(x) is int for x in (*outcome.pool_before, *outcome.balances))
    assert isinstance(outcome.pool_coupled, tuple) and isinstance(outcome.arbitrage_flow, tuple)
