"""The service's model: where its weights are cached, and the bootstrap model at first start.

The service loads the live model through the one loader (`agent.learn.policy.load_policy`),
with the numpy weights cached in `data.dir/service/policies` so a restart does not need torch.
It observes through the model's `PolicySpec`, exactly as the TradingEnv does. When no model is
live (none passed the gate), it trades the better baseline on validation
(`agent.learn.policy.choose_baseline`), recorded as such.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.store import Store


def policy_cache_dir(settings: Settings) -> Path:
    """Return the directory of cached policy weights: `data.dir/service/policies`."""
    return Path(settings.data.dir) / "service" / "policies"


def live_model_id(store: Store) -> str | None:
    """Return the id of the live model (cheap: one query), or None."""
    row = store.db.execute("SELECT id FROM models WHERE status = 'live'").fetchone()
    return None if row is None else str(row[0])


def bootstrap_model(
    store: Store,
    settings: Settings,
    candles: Any,
    key: Any,
    timesteps: int,
    *,
    stop: Callable[[], bool] | None = None,
) -> Any:
    """Train a first model on the history and put it through the gate; return the verdict.

    The bootstrap model goes live only if it beats flat and buy-and-hold on validation, like
    any other (`agent.learn.registry.promote`); otherwise the service trades a baseline.

    Returns:
        The `PromotionResult` (`promoted` False when the gate refused the model).

    Raises:
        TrainingInterrupted: `stop()` became true (the service is stopping).
        ModelError: training failed.
        DataError: the history is too short for the configured split.
    """
    from agent.errors import TrainingInterrupted
    from agent.learn import registry
    from agent.learn.dataset import dataset_from_candles
    from agent.learn.train import train

    dataset = dataset_from_candles(candles, settings, key=key, store=store)
    if stop is not None and stop():
        raise TrainingInterrupted("the bootstrap training was stopped before it began")
    report = train(  # the service masks a failing strategy rather than refusing to trade
        settings,
        store,
        dataset=dataset,
        seeds=1,
        timesteps=timesteps,
        allow_masked_strategies=True,
        stop=stop,
    )
    return registry.promote(store, settings, report.runs[0].model_id)
