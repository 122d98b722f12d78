"""`--onchain` equals off-chain to the wei: every trade a real swap through the pool contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from eth_utils import keccak

from agent.backtest import engine
from agent.backtest.engine import BacktestConfig, TargetPolicy
from agent.backtest.onchain import open_onchain_venue, run_onchain
from agent.backtest.runner import market_data, run_scenario
from agent.backtest.scenario import parse_scenario
from agent.chain.backends import EmbeddedBackend
from agent.chain.deploy import deploy_all
from agent.config import DexSettings, Settings, SyntheticSettings
from agent.dex.pool import PoolConfig
from agent.errors import ChainError
from agent.market.synthetic import generate
from agent.store import Store
from strategies import MACrossover

BARS = 260
START = 48
POOL = PoolConfig(liquidity_quote=400_000.0, fee_bps=30, gas_price_gwei=25.0)


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


@pytest.mark.slow
def test_onchain_run_equals_offchain_to_the_wei(backend: EmbeddedBackend, tmp_path: Path) -> None:
    candles = generate(SyntheticSettings(bars=BARS, seed=5), "1h").candles
    n = len(candles)
    data = market_data(candles, np.zeros((n, 0)), np.zeros((n, 0), dtype=bool), ())
    # buys and sells of every size: all in, partial, all out, rebalance up and down
    pattern = [0.0, 1.0, 1.0, 0.4, 0.4, 0.9, 0.2, 0.0, 0.6, 1.0]
    targets = np.repeat(np.tile(pattern, n // 30 + 1), 3)[:n]
    policy = TargetPolicy("pattern", "baseline", targets)
    config = BacktestConfig(pool=POOL, start=START)
    offchain = engine.run_targets(data, policy, config)
    assert (offchain.side == 1).sum() > 10 and (offchain.side == -1).sum() > 10

    settings = _settings(tmp_path)
    with Store(tmp_path / "agora.db") as store:
        deployment = deploy_all(backend, store, settings, initial_price=float(data.close[START]))
    venue = open_onchain_venue(backend, deployment)
    onchain = run_onchain(data, policy, config, venue)

    assert engine.same_run(onchain, offchain)  # equity, balances, costs, decision hashes
    assert onchain.extra["execution"] == "onchain"
    assert onchain.extra["transactions"] >= offchain.swaps
    log = deployment.contract(backend.w3, "decision_log")
    assert log.functions.count().call() == offchain.decisions
    head = bytes(32)
    assert len(offchain.decision_hashes) == offchain.decisions
    for decision in offchain.decision_hashes:
        head = keccak(head + decision)
    assert onchain.extra["decision_log_head"] == "0x" + head.hex()


def test_a_pool_that_is_not_fresh_is_refused(backend: EmbeddedBackend, tmp_path: Path) -> None:
    candles = generate(SyntheticSettings(bars=80, seed=1), "1h").candles
    data = market_data(candles, np.zeros((80, 0)), np.zeros((80, 0), dtype=bool), ())
    with Store(tmp_path / "agora.db") as store:  # seeded at another price than bar 48's
        deployment = deploy_all(backend, store, _settings(tmp_path), initial_price=1.0)
    venue = open_onchain_venue(backend, deployment)
    with pytest.raises(ChainError, match="parity broken at the start"):
        run_onchain(data, engine.buy_and_hold(data), BacktestConfig(pool=POOL, start=START), venue)


@pytest.mark.slow
def test_scenario_with_onchain_execution_records_the_onchain_run(tmp_path: Path) -> None:
    scenario = parse_scenario(
        {
            "name": "onchain",
            "data": {"source": "synthetic", "synthetic": {"bars": 130, "seed": 2}},
            "strategies": ["ma-crossover"],
            "strategy_params": {"ma-crossover": {"fast": 3, "slow": 8, "scale": 200.0}},
            "policy": {"strategy": "ma-crossover"},
            "baselines": ["flat"],
            "execution": "onchain",
        }
    )
    run = run_scenario(scenario, _settings(tmp_path), strategies=[MACrossover])
    main = run.result("ma-crossover")
    assert main.extra["execution"] == "onchain"
    assert main.swaps > 4 and main.extra["decisions_logged"] == main.decisions
    assert run.metadata.execution == "onchain"
