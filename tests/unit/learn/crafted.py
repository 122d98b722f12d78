"""Real SB3 models whose policy is set by hand, for tests of the gate and the service.

A PPO model with no hidden layers is a linear map from the observation to the action logits;
setting its weights gives a policy whose behaviour is known: follow a strategy's signal (all in
when it is positive), go against it, always stay flat, or always be fully invested. The model
is saved and registered exactly as training does (canonical file, metadata from the spec).
"""

from __future__ import annotations

import time
from typing import Literal

import torch
from stable_baselines3 import PPO

from agent.config import Settings
from agent.env.features import FEATURE_NAMES
from agent.env.spec import PolicySpec
from agent.env.trading_env import EnvConfig, TradingEnv
from agent.learn import registry
from agent.learn.dataset import load_dataset
from agent.market.data import default_key
from agent.store import Store

Rule = Literal["follow", "against", "flat", "invested"]


def register_rule_model(store: Store, settings: Settings, rule: Rule, strategy: str) -> str:
    """Register a PPO model that trades `rule` on `strategy`'s signal; return its id.

    The settings must describe a discrete action with exposure levels (0, 1).
    """
    key = default_key(settings)
    dataset = load_dataset(store, settings, key)
    config = EnvConfig.from_settings(settings)
    spec = config.spec(dataset.strategy_names)
    assert spec.action == "discrete" and spec.exposure_levels == (0.0, 1.0)
    env = TradingEnv(dataset.data, config)
    model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": []}, seed=0, device="cpu")
    column = spec.lookback_bars * len(FEATURE_NAMES) + dataset.strategy_names.index(strategy)
    with torch.no_grad():
        weight, bias = model.policy.action_net.weight, model.policy.action_net.bias
        weight.zero_()
        bias.zero_()
        if rule == "follow":
            weight[1, column] = 100.0
        elif rule == "against":
            weight[1, column] = -100.0
        elif rule == "flat":
            bias[0] = 1.0
        else:
            bias[1] = 1.0
    metadata = {"algorithm": "ppo", "features": list(FEATURE_NAMES), **spec.to_metadata()}
    assert PolicySpec.from_metadata(metadata) == spec
    model_id, path = registry.write_model_file(
        registry.model_bytes(model, metadata), registry.models_dir(settings)
    )
    registry.register(
        store,
        registry.ModelRecord(
            id=model_id,
            created_ms=int(time.time() * 1000),
            algorithm="ppo",
            series={"source": key.source, "symbol": key.symbol, "timeframe": key.timeframe},
            hyperparameters={"rule": rule, "strategy": strategy},
            config_hash=settings.config_hash(),
            data_hash=dataset.data_hash,
            strategies=list(dataset.strategy_names),
            seeds=[0],
            metrics={"windows": {n: w.as_dict() for n, w in dataset.windows.items()}},
            path=str(path),
        ),
    )
    return model_id
