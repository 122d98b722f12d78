"""The service's model: where its weights are cached, and the bootstrap model at first start.

The service loads the live model through the one loader (`agent.learn.policy.load_policy`),
with the numpy weights cached in `data.dir/service/policies` so a restart does not need torch.
It observes through the model's `PolicySpec`, exactly as the TradingEnv does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.errors import ModelError
from agent.store import Store


def policy_cache_dir(settings: Settings) -> Path:
    """Return the directory of cached policy weights: `data.dir/service/policies`."""
    return Path(settings.data.dir) / "service" / "policies"


def live_model_id(store: Store) -> str | None:
    """Return the id of the live model (cheap: one query), or None."""
    row = store.db.execute("SELECT id FROM models WHERE status = 'live'").fetchone()
    return None if row is None else str(row[0])


def bootstrap_model(
    store: Store, settings: Settings, candles: Any, key: Any, timesteps: int
) -> str:
    """Train a first model on the history, register it and make it live; return its id.

    Raises:
        ModelError: training failed or the model could not be promoted.
        DataError: the history is too short for the configured split.
    """
    from agent.learn import registry
    from agent.learn.dataset import dataset_from_candles
    from agent.learn.train import train

    dataset = dataset_from_candles(candles, settings, key=key, store=store)
    report = train(settings, store, dataset=dataset, seeds=1, timesteps=timesteps)
    model_id = report.runs[0].model_id
    result = registry.promote(store, settings, model_id, force=True)
    if not result.promoted and result.reason != "already live":
        raise ModelError(f"the bootstrap model {model_id[:12]} was not promoted: {result.reason}")
    return model_id
