"""The numpy policy and the kernel's compiled forward pass equal SB3's deterministic predict,
for every algorithm and action kind, on 10,000 observations each."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from agent.env.trading_env import EnvConfig, TradingEnv
from agent.errors import ModelError
from agent.learn.dataset import Dataset
from agent.learn.inference import NumpyPolicy
from tests.unit.learn.conftest import tiny_settings

CASES = [
    (PPO, "discrete", {"n_steps": 64, "batch_size": 32}),
    (PPO, "continuous", {"n_steps": 64, "batch_size": 32}),
    (A2C, "discrete", {"n_steps": 16}),
    (A2C, "continuous", {"n_steps": 16}),
    (DQN, "discrete", {"learning_starts": 32, "buffer_size": 500, "train_freq": 1}),
    (SAC, "continuous", {"learning_starts": 32, "buffer_size": 500}),
]


def _env(dataset: Dataset, action: str, tmp_path: Any) -> TradingEnv:
    settings = tiny_settings(tmp_path)
    data, _, _ = dataset.env_data("train")
    return TradingEnv(data, EnvConfig.from_settings(settings, action))  # type: ignore[arg-type]


def _observations(env: TradingEnv, count: int = 10_000) -> np.ndarray:
    """Observations the policy meets, and random ones spread over the whole box."""
    rng = np.random.default_rng(0)
    rows = []
    obs, _ = env.reset(seed=0)
    for _ in range(count // 2):
        rows.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    box = env.observation_space
    random = rng.uniform(-2.0, 2.0, (count - len(rows), box.shape[0])).astype(np.float32)
    return np.vstack([np.array(rows, dtype=np.float32), random])


def _trained(cls: type[BaseAlgorithm], env: TradingEnv, kwargs: dict[str, Any]) -> Any:
    torch.set_num_threads(1)
    model = cls(
        "MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [16, 8]}, **kwargs
    )
    model.learn(128)
    return model


@pytest.mark.parametrize(("cls", "action", "kwargs"), CASES, ids=lambda c: str(c)[:30])
def test_numpy_policy_equals_sb3_deterministic_predict(
    tiny_dataset: Dataset, tmp_path: Any, cls: type[BaseAlgorithm], action: str, kwargs: Any
) -> None:
    env = _env(tiny_dataset, action, tmp_path)
    model = _trained(cls, env, kwargs)
    policy = NumpyPolicy.from_model(model)
    observations = _observations(env)
    expected, _ = model.predict(observations, deterministic=True)
    actual = policy.predict(observations)
    compiled = policy.network.actions(observations)  # the forward pass the kernel runs
    assert actual.shape == expected.shape
    if action == "discrete":
        np.testing.assert_array_equal(actual, expected)
        np.testing.assert_array_equal(compiled, expected)
        assert len(np.unique(expected)) > 1, "a constant policy would prove little"
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(compiled, expected[:, 0], rtol=0, atol=1e-5)
        assert np.ptp(expected) > 0.01, "a constant policy would prove little"
    # one observation at a time, as the environment loop and the service call it
    for obs in observations[:50]:
        single, _ = model.predict(obs, deterministic=True)
        if action == "discrete":
            assert policy(obs) == int(single)
        else:
            np.testing.assert_allclose(policy(obs), single, rtol=0, atol=1e-5)


def test_numpy_policy_refuses_a_wrong_observation_size(
    tiny_dataset: Dataset, tmp_path: Any
) -> None:
    env = _env(tiny_dataset, "discrete", tmp_path)
    policy = NumpyPolicy.from_model(_trained(PPO, env, {"n_steps": 64, "batch_size": 32}))
    with pytest.raises(ModelError, match="observation has 3 values"):
        policy.predict(np.zeros(3, dtype=np.float32))
