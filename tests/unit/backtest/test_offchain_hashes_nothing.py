"""An off-chain backtest computes no keccak256: decisions are hashed only when recorded or sent.

Its identity is `RolloutResult.fingerprint`, a sha256 over the run's arrays, hashed once.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import eth_utils
import numpy as np
import pytest

import agent.audit.record
import agent.backtest.onchain
from agent.backtest import engine
from agent.backtest.engine import BacktestConfig, ModelPolicy, SignalMapping
from agent.backtest.runner import run_scenario, write_outputs
from agent.backtest.scenario import parse_scenario
from agent.config import Settings
from agent.env.trading_env import EnvConfig, MarketData
from strategies import MACrossover


class KeccakCalled(AssertionError):
    pass


@pytest.fixture
def no_keccak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Agora's keccak256 binding and eth_utils' (eth-hash) raise when called."""

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise KeccakCalled("keccak256 was computed")

    monkeypatch.setattr(agent.audit.record, "_keccak256", refuse)
    monkeypatch.setattr("eth_utils.crypto.keccak_256", refuse)
    with pytest.raises(KeccakCalled):
        agent.audit.record.keccak256(b"")
    with pytest.raises(KeccakCalled):
        eth_utils.keccak(b"")


def test_rule_and_model_backtests_compute_no_keccak(market: MarketData, no_keccak: None) -> None:
    config = BacktestConfig(start=48)
    rule = engine.strategy_policy(market, "ma-crossover", SignalMapping("threshold"))
    by_rule = engine.run_backtest(market, rule, config)
    targets = iter(by_rule.target.tolist())
    model = ModelPolicy(
        "replay", lambda obs: np.array([next(targets)]), EnvConfig(action="continuous")
    )
    by_model = engine.run_backtest(market, model, config)
    assert by_rule.decisions > 100 and by_model.fingerprint == by_rule.fingerprint
    assert by_rule.fingerprint.startswith("sha256:")


def test_an_offchain_scenario_and_its_report_compute_no_keccak(
    tmp_path: Path, no_keccak: None
) -> None:
    scenario = parse_scenario(
        {
            "name": "offchain",
            "data": {"source": "synthetic", "synthetic": {"bars": 200, "seed": 3}},
            "strategies": ["ma-crossover"],
            "strategy_params": {"ma-crossover": {"fast": 3, "slow": 8, "scale": 200.0}},
            "policy": {"strategy": "ma-crossover"},
            "baselines": ["flat", "buy-and-hold"],
        }
    )
    run = run_scenario(scenario, Settings(), strategies=[MACrossover])
    outputs = write_outputs(run, scenario, None, tmp_path)
    assert run.onchain is None and run.result("ma-crossover").decisions > 100
    assert outputs.results_path is not None and outputs.results_path.exists()


def test_importing_the_onchain_module_computes_no_keccak(
    monkeypatch: pytest.MonkeyPatch, no_keccak: None
) -> None:
    """Every backtest imports it (through the runner): a fresh copy is executed here."""
    name = "agent.backtest._onchain_fresh"
    spec = importlib.util.spec_from_file_location(name, agent.backtest.onchain.__file__)
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, fresh)
    spec.loader.exec_module(fresh)
    assert fresh.NO_OBSERVATION == agent.backtest.onchain.NO_OBSERVATION
