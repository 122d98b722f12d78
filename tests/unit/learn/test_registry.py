"""The model registry: records, id prefixes, the promotion gate, export with a hash check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import SyntheticSettings
from agent.errors import ModelError, UsageError
from agent.learn import registry
from agent.learn.train import train
from agent.market.synthetic import synth
from agent.store import Store
from tests.unit.learn.conftest import tiny_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with a tiny synthetic market and two registered PPO models (seeds 0 and 1)."""
    directory = tmp_path_factory.mktemp("registry")
    settings = tiny_settings(directory, timesteps=256)
    with Store(settings.data.database_path) as store:
        synth(store, SyntheticSettings(seed=3, bars=900), "SYN/USD", "1h")
        report = train(settings, store, algorithm="ppo", seeds=2)
    return {"settings": settings, "report": report}


def _store(trained: dict[str, Any]) -> Store:
    return Store(trained["settings"].data.database_path)


def test_training_registers_every_seed_with_its_provenance(trained: dict[str, Any]) -> None:
    report = trained["report"]
    with _store(trained) as store:
        records = registry.list_models(store)
    assert {r.id for r in records} == {run.model_id for run in report.runs}
    record = next(r for r in records if r.seeds == [0])
    assert record.algorithm == "ppo"
    assert record.status == "candidate"
    assert record.series == {"source": "synthetic", "symbol": "SYN/USD", "timeframe": "1h"}
    assert record.data_hash == report.data_hash
    assert record.config_hash == trained["settings"].config_hash()
    assert record.strategies == ["planted-oracle", "noise:seed=1", "ts-momentum"]
    assert record.hyperparameters["policy_kwargs"] == {"net_arch": [16]}
    assert record.hyperparameters["env"]["lookback_bars"] == 4
    assert set(record.metrics) >= {"validation", "test", "best_step", "warnings", "baselines"}
    assert Path(record.path).name == f"{record.id}.zip"


def test_show_accepts_a_unique_prefix_and_names_bad_ones(trained: dict[str, Any]) -> None:
    model_id = trained["report"].runs[0].model_id
    with _store(trained) as store:
        assert registry.show(store, model_id[:10]).id == model_id
        with pytest.raises(UsageError, match="no model with id"):
            registry.show(store, "ffffffffffff")
        with pytest.raises(UsageError, match="too short"):
            registry.show(store, "ab")


def test_registering_the_same_model_again_keeps_the_first_record(trained: dict[str, Any]) -> None:
    with _store(trained) as store:
        record = registry.list_models(store)[0]
        again = registry.register(store, record)
        assert again == record
        assert len(registry.list_models(store)) == 2


def test_promotion_compares_on_the_validation_window(trained: dict[str, Any]) -> None:
    settings = trained["settings"]
    with _store(trained) as store:
        record = registry.list_models(store)[0]
        _, window = registry.validation_score(store, settings, record, record.key)
    assert window == record.metrics["windows"]["validation"]


def test_export_copies_the_file_and_checks_its_hash(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    model_id = trained["report"].runs[0].model_id
    with _store(trained) as store:
        target = registry.export(store, model_id, tmp_path)
        assert target == tmp_path / f"{model_id}.zip"
        assert registry.model_id_of_file(target) == model_id
        named = registry.export(store, model_id[:8], tmp_path / "out" / "model.zip")
        assert named.read_bytes() == target.read_bytes()


def test_export_refuses_an_altered_model_file(tmp_path: Path, trained: dict[str, Any]) -> None:
    with _store(trained) as source:
        record = registry.list_models(source)[0]
    copy = tmp_path / "copy.zip"
    copy.write_bytes(Path(record.path).read_bytes() + b"tampered")
    with Store(tmp_path / "other.db") as store:
        registry.register(store, registry.ModelRecord(**{**record.as_dict(), "path": str(copy)}))
        with pytest.raises(ModelError, match="was altered"):
            registry.export(store, record.id, tmp_path / "out.zip")
