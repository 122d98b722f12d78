"""`evaluate`'s estimated contribution: the rewards' own measurement, on the validation window."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agent.backtest.evaluation import evaluate_strategy
from agent.config import Settings, SyntheticSettings
from agent.env.trading_env import EnvConfig
from agent.learn.dataset import load_dataset
from agent.learn.policy import load_policy
from agent.learn.train import train
from agent.market.synthetic import synth
from agent.rewards.attribution import shapley
from agent.rewards.game import evaluate_epoch
from agent.store import Store
from tests.unit.learn.conftest import TINY_AGENT


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with a tiny synthetic market and one tiny PPO model observing three strategies,
    whose actions on the validation window depend on `planted-oracle`. Its learning rate is
    pinned: in 256 steps at the shipped one, the kept checkpoint ignores the strategy, and its
    contribution is exactly 0 with no error to divide by."""
    directory = tmp_path_factory.mktemp("contribution")
    settings = Settings.model_validate(
        {
            "data": {"dir": str(directory)},
            "agent": {**TINY_AGENT, "learning_rate": 3e-4},
            "strategies": {"fixtures": ["planted-oracle"]},
            "rewards": {"workers": 1, "bootstrap_samples": 200},
        }
    )
    with Store(settings.data.database_path) as store:
        synth(store, SyntheticSettings(seed=3, bars=900), "SYN/USD", "1h")
        report = train(settings, store, algorithm="ppo", seeds=1)
    return {"settings": settings, "model_id": report.runs[0].model_id}


def test_the_estimate_is_the_strategys_shapley_value_on_the_validation_window(
    trained: dict[str, Any],
) -> None:
    settings, model_id = trained["settings"], trained["model_id"]
    evaluation = evaluate_strategy(settings, "planted-oracle", model=model_id)
    estimate = evaluation.as_dict()["contribution"]
    assert estimate is not None and estimate["model_id"] == model_id
    assert estimate["probe"] is False and estimate["method"] == "exact"

    rewards = settings.rewards
    with Store(settings.data.database_path) as store:
        loaded = load_policy(store, model_id)
        dataset = load_dataset(store, settings, strategies=list(loaded.spec.strategies))
    data, start, end = dataset.env_data("validation")
    names = list(loaded.spec.strategies)  # shipped and fixtures: registered first, in order
    game = evaluate_epoch(
        loaded.predict,
        data,
        start,
        end,
        names,
        env_config=EnvConfig.from_settings(settings).for_spec(loaded.spec),
        group_r2=rewards.group_r2,
        lags=rewards.neutralise_lags,
    )
    direct = shapley(
        game,
        names,
        exact_max_players=rewards.shapley_exact_max_players,
        samples=rewards.shapley_samples,
        seed=rewards.shapley_seed,
        bootstrap_samples=rewards.bootstrap_samples,
        bootstrap_block=rewards.bootstrap_block_bars,
        bootstrap_seed=rewards.shapley_seed,
        groups=game.partition(),
    )
    assert estimate["value"] == direct.by_name()["planted-oracle"]
    assert estimate["se"] == direct.errors_by_name()["planted-oracle"]
    assert estimate["se"] > 0, estimate
    assert estimate["z"] == pytest.approx(estimate["value"] / estimate["se"])
    assert estimate["significant"] == (
        estimate["z"] > rewards.significance and estimate["value"] > 0
    )
    window = dataset.windows["validation"]
    assert (estimate["window"]["start"], estimate["window"]["end"]) == (window.start, window.end)
    assert estimate["group"] == game.groups().get("planted-oracle")
    assert "payouts accumulate" in evaluation.contribution.note


def test_a_candidate_the_model_does_not_observe_needs_a_probe(trained: dict[str, Any]) -> None:
    settings, model_id = trained["settings"], trained["model_id"]
    without = evaluate_strategy(settings, "ma-crossover", model=model_id)
    assert without.as_dict()["contribution"] is None
    assert f"model {model_id[:12]} does not observe ma-crossover" in without.contribution.note
    assert "--probe-timesteps" in without.contribution.note

    probed = evaluate_strategy(settings, "ma-crossover", model=model_id, probe_timesteps=256)
    estimate = probed.as_dict()["contribution"]
    assert estimate is not None and estimate["probe"] is True
    assert estimate["model_id"] != model_id
    assert math.isfinite(estimate["value"]) and math.isfinite(estimate["se"])
    assert estimate["players"][-1] == "ma-crossover" or "ma-crossover" in estimate["players"]
