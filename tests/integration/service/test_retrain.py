"""Bootstrap and retrain with real (tiny) PPO training: the first model is trained on the history
and goes live; a retrain trains on every revealed bar and goes live only through the gate."""

from __future__ import annotations

from pathlib import Path

from agent.learn.registry import list_models, live_model
from agent.service import jobs, ledger
from tests.integration.service.conftest import StartRuntime
from tests.unit.service.fixtures import service_settings

TINY = {"timesteps": 256, "n_steps": 128, "batch_size": 32, "eval_every_steps": 256}


def test_bootstrap_then_retrain_through_the_promotion_gate(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(
        tmp_path / "data", bootstrap_model=True, bootstrap_timesteps=256, retrain_every_bars=3
    )
    settings = settings.model_copy(update={"agent": settings.agent.model_copy(update=TINY)})
    started = start_runtime(settings, model=False)
    runtime = started.runtime
    (trained,) = started.events("bootstrap_trained")
    store = runtime.require_store()
    first = live_model(store)
    policy = runtime.policy
    assert policy is not None
    if trained["promoted"]:  # the bootstrap model went through the gate like any other
        assert first is not None and first.id == trained["model"] == policy.model_id
    else:
        assert first is None and "does not beat" in trained["reason"] and policy.is_baseline
    (bootstrap,) = [m for m in list_models(store) if m.id == trained["model"]]
    assert bootstrap.key.source == "replay-synthetic"  # trained on the revealed series only

    jobs.tick(runtime, max_bars=2)
    assert jobs.retrain(runtime).status == "idle"  # 2 of 3 bars
    jobs.tick(runtime, max_bars=1)
    result = jobs.retrain(runtime)

    assert result.status == "ok"
    (retrained,) = started.events("retrained")
    assert retrained["bars"] == 303  # the history and the three revealed bars, nothing later
    assert len(list_models(store)) == 2
    state = ledger.get_state(store, "retrain")
    assert state is not None and state["decided"] == 3 and state["model"] == retrained["model"]
    jobs.tick(runtime, max_bars=1)
    live = live_model(store)
    assert runtime.policy is not None
    if retrained["promoted"]:
        assert live is not None and live.id == retrained["model"]
        assert started.events("model_changed") and runtime.policy.model_id == live.id
    else:
        assert "does not beat" in retrained["reason"]
        assert live == first  # nothing changed: the live model, or none (the baseline trades)
        assert runtime.policy.model_id == (first.id if first else policy.model_id)
    assert jobs.retrain(runtime).status == "idle"  # the next one after 3 more bars
