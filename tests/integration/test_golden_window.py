"""One golden window, five paths, one equity curve, bit for bit.

A real PPO model (trained for a few hundred steps, registered in a real store) is run over the
validation window of a stored synthetic market through every path that runs a policy:

- training validation (`agent.learn.train.evaluate`, what the checkpoint callback calls);
- the promotion gate (`registry.validation_score`);
- a backtest of the stored series (`run_scenario` with `--model ID` and the window's dates),
  which builds its own market data over the stored history;
- attribution (`evaluate_epoch` with every strategy visible);
- the service path: bar by bar, each observation built from the candles up to that bar only
  (`build_market_data` over the prefix, `PolicySpec.observe`) and each trade decided with
  `decide_outcome` from the carried state.

All five must give the same equity (or log return) exactly: a signal or a trade at bar t is the
same number wherever it is computed.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from agent.backtest.runner import run_scenario
from agent.backtest.scenario import parse_scenario
from agent.config import Settings, SyntheticSettings
from agent.dex.pool import MarketCoupledPool, PoolConfig
from agent.env.spec import exposure, portfolio_value
from agent.env.trading_env import EnvConfig
from agent.learn import registry
from agent.learn.dataset import load_dataset
from agent.learn.policy import load_policy
from agent.learn.train import evaluate, train
from agent.market.data import default_key
from agent.market.schema import format_time_ms
from agent.market.synthetic import synth
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies
from agent.rewards.game import evaluate_epoch
from agent.service.decision import BarOutcome, carried_state, decide_outcome
from agent.store import Store

AGENT = {
    "strategies": ["ma-crossover", "rsi-reversion", "macd", "ts-momentum"],
    "lookback_bars": 4,
    "exposure_levels": [0.0, 0.5, 1.0],
    "timesteps": 256,
    "eval_every_steps": 128,
    "episode_bars": 64,
    "net_arch": [16],
    "n_steps": 64,
    "batch_size": 32,
    "split": {"train": 0.6, "validation": 0.25, "test": 0.15},
}


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("golden")
    settings = Settings.model_validate({"data": {"dir": str(directory)}, "agent": AGENT})
    store = Store(settings.data.database_path)
    key = default_key(settings)
    synth(store, SyntheticSettings(seed=9, bars=700), key.symbol, key.timeframe)
    report = train(settings, store, seeds=1)
    model_id = report.runs[0].model_id
    loaded = load_policy(store, model_id)
    dataset = load_dataset(store, settings, key)
    data, start, end = dataset.env_data("validation")
    costs = replace(EnvConfig.from_settings(settings), strategy_dropout=0.0, turnover_penalty=0.0)
    training = evaluate(data, loaded.predict, costs, start, end)
    assert training.swaps > 0, "the golden window must trade for the comparison to mean anything"
    return {
        "settings": settings,
        "store": store,
        "key": key,
        "loaded": loaded,
        "dataset": dataset,
        "window": (start, end),
        "training": training,
    }


def test_the_promotion_gate_scores_the_same_run(golden: dict[str, object]) -> None:
    training = golden["training"]
    record = registry.show(golden["store"], golden["loaded"].model_id)  # type: ignore[attr-defined]
    score, _ = registry.validation_score(
        golden["store"],  # type: ignore[arg-type]
        golden["settings"],  # type: ignore[arg-type]
        record,
        golden["key"],  # type: ignore[arg-type]
    )
    assert score == math.log(training.equity[-1] / training.equity[0])  # type: ignore[attr-defined]


def test_a_backtest_of_the_window_gives_the_same_equity(golden: dict[str, object]) -> None:
    start, end = golden["window"]  # type: ignore[misc]
    times = golden["dataset"].data.open_time  # type: ignore[attr-defined]
    scenario = parse_scenario(
        {
            "name": "golden",
            "data": {
                "source": "store",
                "start": format_time_ms(int(times[start])),
                "end": format_time_ms(int(times[end])),
            },
            "policy": {"model": golden["loaded"].model_id},  # type: ignore[attr-defined]
            "baselines": ["flat"],
        }
    )
    run = run_scenario(scenario, golden["settings"], store=golden["store"])  # type: ignore[arg-type]
    model = run.results[0]
    assert model.kind == "model" and model.start == start
    np.testing.assert_array_equal(model.equity, golden["training"].equity)  # type: ignore[attr-defined]


def test_attribution_with_every_strategy_visible_gives_the_same_run(
    golden: dict[str, object],
) -> None:
    start, end = golden["window"]  # type: ignore[misc]
    loaded = golden["loaded"]
    costs = replace(EnvConfig.from_settings(golden["settings"]), strategy_dropout=0.0)  # type: ignore[arg-type]
    game = evaluate_epoch(
        loaded.predict,  # type: ignore[attr-defined]
        golden["dataset"].data,  # type: ignore[attr-defined]
        start,
        end,
        env_config=costs.for_spec(loaded.spec),  # type: ignore[attr-defined]
    )
    outcome = game.outcome(frozenset(range(len(game.names))))
    training = golden["training"]
    assert outcome.value_start == training.equity[0]  # type: ignore[attr-defined]
    assert outcome.value_end == training.equity[-1]  # type: ignore[attr-defined]


def test_the_service_path_bar_by_bar_gives_the_same_equity(golden: dict[str, object]) -> None:
    start, end = golden["window"]  # type: ignore[misc]
    settings: Settings = golden["settings"]  # type: ignore[assignment]
    loaded = golden["loaded"]
    candles = golden["store"].read_candles(golden["key"])  # type: ignore[attr-defined]
    strategies = resolve_strategies(list(loaded.spec.strategies), settings)  # type: ignore[attr-defined]
    pool = MarketCoupledPool(PoolConfig.from_settings(settings.dex))
    first = pool.reset(float(candles["close"].iloc[start]))
    state = {
        "base": 0,
        "quote": round(settings.agent.initial_value_quote * 10**6),
        "pool": [first.base, first.quote, first.total_supply],
        "gas_total": 0,
        "arbitrage_flow": [0, 0],
    }
    equity = [portfolio_value(state["base"], state["quote"], float(candles["close"].iloc[start]))]
    for t in range(start, end):
        prefix = candles.iloc[: t + 1].reset_index(drop=True)  # nothing after bar t
        data, _ = build_market_data(prefix, strategies)
        price = float(prefix["close"].iloc[t])
        observation = loaded.spec.observe(  # type: ignore[attr-defined]
            data.features,
            data.signals,
            data.mask,
            t,
            exposure(state["base"], state["quote"], price),
        )
        outcome = decide_outcome(pool, state, price, loaded.decide(observation))  # type: ignore[attr-defined]
        state = carried_state(_Tick(outcome), None)  # type: ignore[arg-type]
        next_price = float(candles["close"].iloc[t + 1])
        equity.append(portfolio_value(state["base"], state["quote"], next_price))
    np.testing.assert_array_equal(np.array(equity), golden["training"].equity)  # type: ignore[attr-defined]


class _Tick:
    """The ledger row the service carries its state in (only the outcome is read)."""

    def __init__(self, outcome: BarOutcome) -> None:
        self.outcome = outcome
