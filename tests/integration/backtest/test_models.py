"""Trained models in backtests: a registered model through the loader, and walk-forward
training with stable-baselines3 on tiny budgets (fixed seeds)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from agent.backtest import engine, walkforward
from agent.backtest.engine import BacktestConfig, ModelPolicy
from agent.backtest.runner import prepare, run_scenario
from agent.backtest.scenario import Scenario
from agent.config import Settings, SyntheticSettings
from agent.errors import ModelError
from agent.store import Store
from strategies import MACrossover, RSIReversion

STRATEGIES = [MACrossover, RSIReversion]
DATA = {"source": "synthetic", "synthetic": {"bars": 800, "seed": 6}}


def test_a_model_is_compared_with_every_strategy_and_baseline() -> None:
    scenario = Scenario.model_validate({"data": DATA, "policy": {"model": "m-1"}, "seed": 2})
    prepared = prepare(scenario, Settings(), strategies=STRATEGIES)
    trained = walkforward.learn_trainer(Settings(), 128)(prepared.data, 48, 400, 0)
    loaded: list[str] = []

    def loader(model_id: str) -> ModelPolicy:
        loaded.append(model_id)
        return ModelPolicy("ppo-m-1", trained.predict, trained.env_config, model_id="m-1")

    run = run_scenario(scenario, Settings(), model_loader=loader, strategies=STRATEGIES)
    assert loaded == ["m-1"]
    assert [r.name for r in run.results] == [
        "ppo-m-1",
        "ma-crossover",
        "rsi-reversion",
        "buy-and-hold",
        "flat",
        "random",
    ]
    assert run.metadata.model_id == "m-1" and run.metadata.main_policy == "ppo-m-1"
    assert run.results[0].kind == "model" and run.results[0].fingerprint


def test_without_a_live_model_the_error_says_what_to_do(tmp_path: Path) -> None:
    scenario = Scenario.model_validate({"data": DATA, "policy": {"model": "live"}})
    with Store(tmp_path / "agora.db") as store, pytest.raises(ModelError, match="no live model"):
        run_scenario(scenario, Settings(), store=store, strategies=STRATEGIES)


def test_walk_forward_trains_each_window_and_stitches_the_tests() -> None:
    scenario = Scenario.model_validate(
        {
            "data": DATA,
            "walkforward": {"train_bars": 300, "test_bars": 200, "timesteps": 128},
            "baselines": ["buy-and-hold"],
            "seed": 1,
        }
    )
    run = run_scenario(scenario, Settings(), strategies=STRATEGIES)
    stitched = run.result("walk-forward")
    assert run.metadata.mode == "walkforward" and run.metadata.main_policy == "walk-forward"
    assert len(run.windows) == 3  # tests on 348-548, 548-748, 748-799
    assert stitched.decisions == run.result("buy-and-hold").decisions
    assert np.array_equal(stitched.open_time, run.result("buy-and-hold").open_time)
    starts = [w["test_from"] for w in run.windows]
    ends = [w["test_to"] for w in run.windows]
    assert starts[1:] == ends[:-1]  # stitched without gap or overlap


def test_a_window_trains_the_same_after_crossing_to_a_worker_and_back() -> None:
    prepared = prepare(Scenario.model_validate({"data": DATA}), Settings(), strategies=STRATEGIES)
    job = walkforward.TrainingJob(prepared.data, walkforward.learn_trainer(Settings(), 128), 4)
    window = walkforward.make_windows(48, prepared.data.bars - 1, 300, 200)[1]
    here = walkforward.train_window(job, window)
    shipped = pickle.loads(pickle.dumps(job))  # what a Ray worker receives
    there = pickle.loads(pickle.dumps(walkforward.train_window(shipped, window)))
    config = BacktestConfig(start=window.test_start, end=window.test_end)
    tested = engine.run_backtest(prepared.data, here, config)  # packs the kernel's network
    assert here.predict._network is not None
    back = pickle.loads(pickle.dumps(here))
    assert engine.run_backtest(prepared.data, there, config).fingerprint == tested.fingerprint
    assert engine.run_backtest(prepared.data, back, config).fingerprint == tested.fingerprint
    assert tested.swaps > 0  # the model trades: equal fingerprints compare something


def test_the_live_model_from_the_registry_is_backtested(tmp_path: Path) -> None:
    from agent.learn import registry
    from agent.learn.train import train
    from agent.market.synthetic import synth

    settings = Settings.model_validate(
        {
            "data": {"dir": str(tmp_path)},
            "agent": {
                "timesteps": 256,
                "eval_every_steps": 256,
                "n_steps": 128,
                "strategies": ["ma-crossover", "rsi-reversion"],
            },
        }
    )
    with Store(settings.data.database_path) as store:
        synth(store, SyntheticSettings(bars=900, seed=4), "SYN/USD", "1h")
        trained = train(settings, store)
        model_id = trained.runs[0].model_id
        assert registry.promote(store, settings, model_id, force=True).promoted
        scenario = Scenario.model_validate({"policy": {"model": "live"}, "baselines": ["flat"]})
        run = run_scenario(scenario, settings, store=store)
    main = run.results[0]
    assert main.name == f"model-{model_id[:8]}" and main.kind == "model"
    assert run.metadata.model_id == model_id
    assert run.signal_names == ("ma-crossover", "rsi-reversion")  # what the model observes
    assert [r.name for r in run.results][1:] == ["ma-crossover", "rsi-reversion", "flat"]
