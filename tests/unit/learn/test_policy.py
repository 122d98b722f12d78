"""One way to load a policy: `load_policy(store, "live" | id)`, checked file, cached weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.errors import ModelError, ModelNotFound
from agent.learn.inference import DenseLayer, NumpyPolicy
from agent.learn.policy import (
    load_policy,
    load_policy_cache,
    save_policy_cache,
    verify_model_file,
)
from agent.learn.registry import live_model
from agent.service.policy import policy_cache_dir
from agent.store import Store
from tests.unit.service.fixtures import STRATEGIES, install_model, service_settings

LOOKBACK = 16


def test_cached_weights_give_the_same_actions(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    layers = [
        DenseLayer(rng.normal(size=(7, 5)).astype(np.float32), np.ones(5, np.float32), "tanh"),
        DenseLayer(rng.normal(size=(5, 1)).astype(np.float32), np.zeros(1, np.float32), "identity"),
    ]
    policy = NumpyPolicy(layers, "clip", np.zeros(1, np.float32), np.ones(1, np.float32))
    save_policy_cache(policy, tmp_path / "p.npz")
    loaded = load_policy_cache(tmp_path / "p.npz")
    batch = rng.normal(size=(50, 7)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(batch), policy.predict(batch))
    assert loaded.head == "clip" and loaded.n_inputs == 7


def test_the_live_model_and_a_model_by_id_load_the_same_policy(tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    with Store(settings.data.database_path) as store:
        model_id = install_model(store, settings)
        live = load_policy(store, "live", cache_dir=policy_cache_dir(settings))
        by_id = load_policy(store, model_id[:10], cache_dir=policy_cache_dir(settings))
    assert live.model_id == by_id.model_id == model_id
    assert live.spec == by_id.spec and live.spec.strategies == STRATEGIES
    assert live.spec.observation_size == LOOKBACK * 3 + 2 * len(STRATEGIES) + 1
    assert live.record_id == "0x" + model_id
    assert 0.0 <= live.decide(np.zeros(live.spec.observation_size, np.float32)) <= 1.0


@pytest.mark.parametrize("which", ["live", "abcdef012345"])
def test_a_missing_or_unknown_model_is_one_error(tmp_path: Path, which: str) -> None:
    settings = service_settings(tmp_path)
    with Store(settings.data.database_path) as store, pytest.raises(ModelNotFound) as caught:
        load_policy(store, which)
    assert caught.value.exit_code == 1
    assert "agora train" in str(caught.value) or "agora models list" in str(caught.value)


def test_a_corrupt_model_file_is_refused_rather_than_traded_blind(tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    with Store(settings.data.database_path) as store:
        install_model(store, settings)
        record = live_model(store)
        assert record is not None
        path = Path(record.path)
        path.write_bytes(path.read_bytes()[:-7] + b"garbage")
        with pytest.raises(ModelError, match=r"is corrupt"):
            load_policy(store, "live", cache_dir=policy_cache_dir(settings))
        path.unlink()
        with pytest.raises(ModelError, match="is missing"):
            verify_model_file(path, record.id)
