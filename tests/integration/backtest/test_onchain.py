"""`--onchain` equals off-chain to the wei: every trade a real swap through the pool contract."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.audit.record import ZERO_HASH, chain_head, decision_hash, text_id
from agent.audit.verify import verify_records
from agent.backtest import engine
from agent.backtest.engine import BacktestConfig, TargetPolicy
from agent.backtest.onchain import RecordContext, open_onchain_venue, run_onchain
from agent.backtest.runner import run_scenario
from agent.backtest.scenario import parse_scenario
from agent.chain.backends import EmbeddedBackend
from agent.chain.deploy import deploy_all
from agent.config import DexSettings, Settings, SyntheticSettings
from agent.dex.pool import PoolConfig
from agent.errors import ChainError
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from agent.store import Store
from strategies import MACrossover

BARS = 190
START = 48
POOL = PoolConfig(liquidity_quote=400_000.0, fee_bps=30, gas_price_gwei=25.0)
CONTEXT = RecordContext("synthetic:SYN/USD:1h", text_id("baseline:pattern"), "0x" + "11" * 32)


@pytest.fixture
def backend() -> Iterator[EmbeddedBackend]:
    with EmbeddedBackend() as chain:
        yield chain


def _settings(tmp_path: Path) -> Settings:
    dex = DexSettings(
        liquidity_quote=POOL.liquidity_quote,
        fee_bps=POOL.fee_bps,
        gas_price_gwei=POOL.gas_price_gwei,
    )
    return Settings.model_validate({"data": {"dir": str(tmp_path)}, "dex": dex.model_dump()})


def test_onchain_run_equals_offchain_to_the_wei(backend: EmbeddedBackend, tmp_path: Path) -> None:
    candles = generate(SyntheticSettings(bars=BARS, seed=5), "1h").candles
    n = len(candles)
    data, _ = build_market_data(candles, [MACrossover])
    # buys and sells of every size: all in, partial, all out, rebalance up and down
    pattern = [0.0, 1.0, 1.0, 0.4, 0.4, 0.9, 0.2, 0.0, 0.6, 1.0]
    targets = np.repeat(np.tile(pattern, n // 30 + 1), 3)[:n]
    policy = TargetPolicy("pattern", "baseline", targets)
    config = BacktestConfig(pool=POOL, start=START)
    offchain = engine.run_backtest(data, policy, config, exact=True)  # the integer mirror
    assert (offchain.side == 1).sum() > 10 and (offchain.side == -1).sum() > 10
    # the kernel (float64 units) makes the same trades, its money within its documented bound
    assert engine.same_trades(engine.run_backtest(data, policy, config), offchain)

    settings = _settings(tmp_path)
    with Store(tmp_path / "agora.db") as store:
        deployment = deploy_all(backend, store, settings, initial_price=float(data.close[START]))
    venue = open_onchain_venue(backend, deployment)
    run = run_onchain(data, policy, config, venue, CONTEXT)
    onchain = run.result

    assert engine.same_run(onchain, offchain)  # equity, balances, costs, every decision
    assert onchain.extra["execution"] == "onchain"
    assert onchain.extra["transactions"] >= offchain.swaps
    log = deployment.contract(backend.w3, "decision_log")
    assert log.functions.count().call() == offchain.decisions == len(run.records)

    # every decision is an audit.record DecisionRecord, chained, with the swap's real tx
    records = run.records
    assert [r.seq for r in records] == list(range(len(records)))
    assert records[0].prev_hash == ZERO_HASH
    assert all(b.prev_hash == decision_hash(a) for a, b in itertools.pairwise(records))
    traded = [r for r in records if r.trade.side != "none"]
    assert len(traded) == offchain.swaps and all(r.trade.tx_hash != ZERO_HASH for r in traded)
    assert [r.strategy_names for r in records[:1]] == [("ma-crossover",)]
    assert run.head == chain_head([decision_hash(r) for r in records])
    assert onchain.extra["decision_log_head"] == run.head

    # the audit checks the run's records against its log, and catches an altered one
    assert verify_records(backend, run.log_address, records).ok
    k = len(records) // 2
    altered = dataclasses.replace(records[k], bar_time_ms=records[k].bar_time_ms + 1)
    report = verify_records(backend, run.log_address, [*records[:k], altered, *records[k + 1 :]])
    assert not report.ok and report.mismatch is not None and report.mismatch.seq == k


def test_a_pool_that_is_not_fresh_is_refused(backend: EmbeddedBackend, tmp_path: Path) -> None:
    candles = generate(SyntheticSettings(bars=80, seed=1), "1h").candles
    data, _ = build_market_data(candles, [])
    with Store(tmp_path / "agora.db") as store:  # seeded at another price than bar 48's
        deployment = deploy_all(backend, store, _settings(tmp_path), initial_price=1.0)
    venue = open_onchain_venue(backend, deployment)
    with pytest.raises(ChainError, match="parity broken at the start"):
        run_onchain(
            data, engine.buy_and_hold(data), BacktestConfig(pool=POOL, start=START), venue, CONTEXT
        )


def _onchain_scenario(name: str) -> Any:
    """The MA crossover on 130 synthetic bars, executed on-chain, against flat."""
    return parse_scenario(
        {
            "name": name,
            "data": {"source": "synthetic", "synthetic": {"bars": 130, "seed": 2}},
            "strategies": ["ma-crossover"],
            "strategy_params": {"ma-crossover": {"fast": 3, "slow": 8, "scale": 200.0}},
            "policy": {"strategy": "ma-crossover"},
            "baselines": ["flat"],
            "execution": "onchain",
        }
    )


def test_scenario_with_onchain_execution_records_the_onchain_run(tmp_path: Path) -> None:
    scenario = _onchain_scenario("onchain")
    run = run_scenario(scenario, _settings(tmp_path), strategies=[MACrossover])
    main = run.result("ma-crossover")
    assert main.extra["execution"] == "onchain"
    assert main.swaps > 4 and main.extra["decisions_logged"] == main.decisions
    assert run.metadata.execution == "onchain"
    assert run.onchain is not None and len(run.onchain.records) == main.decisions


ANVIL_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""The well-known private key of anvil's first development account."""


def test_an_onchain_backtest_on_an_rpc_node_needs_only_the_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`chain.backend: rpc` signs with the one key of `chain.private_key_env`: the operator
    trades too, arbitrages from a float, and the run still equals the off-chain run."""
    from agent.chain.backends import AnvilBackend

    monkeypatch.setenv("AGORA_ONE_KEY", ANVIL_KEY_0)
    scenario = _onchain_scenario("onchain-rpc")
    with AnvilBackend() as node:
        chain = {"backend": "rpc", "rpc_url": node.url, "private_key_env": "AGORA_ONE_KEY"}
        settings = _settings(tmp_path).model_copy(
            update={"chain": Settings().chain.model_copy(update=chain)}
        )
        run = run_scenario(scenario, settings, strategies=[MACrossover])
        main = run.result("ma-crossover")
        assert main.extra["execution"] == "onchain" and main.swaps > 4
        assert run.onchain is not None and run.onchain.chain_key == "rpc:31337"
        assert len(run.onchain.records) == main.decisions == main.extra["decisions_logged"]
        traded = [r for r in run.onchain.records if r.trade.side != "none"]
        sender = node.w3.eth.get_transaction(traded[0].trade.tx_hash)["from"]
        assert sender == node.accounts[0]  # the one key's account traded
        assert verify_records(node, run.onchain.log_address, run.onchain.records).ok
