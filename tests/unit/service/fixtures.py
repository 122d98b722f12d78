"""Real objects for the service tests: small settings, and a live model without torch.

`install_model` writes a genuine model record and file (a zip holding Agora's `agora.json`
metadata) plus the service's numpy weight cache for it, so `load_policy` takes the same
path as with a trained model (the file's hash is checked, the metadata read, the cached
weights used) without training anything. Integration and e2e tests import this module too.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.config import Settings
from agent.env.spec import PolicySpec
from agent.learn import registry
from agent.learn.inference import DenseLayer, NumpyPolicy
from agent.learn.policy import policy_cache_path, save_policy_cache
from agent.service.policy import policy_cache_dir
from agent.service.runtime import ServiceRuntime
from agent.service.telemetry import ServiceLog
from agent.store import Store

STRATEGIES: tuple[str, ...] = ("ma-crossover", "rsi-reversion", "ts-momentum")
LEVELS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def service_settings(data_dir: Path, **service: Any) -> Settings:
    """Small, fast settings: 360 synthetic bars, 300 of history, replay as fast as possible."""
    sections: dict[str, Any] = {
        "data": {"dir": str(data_dir)},
        "market": {"synthetic": {"bars": int(service.pop("bars", 360)), "seed": 11}},
        "rewards": {"epoch_bars": 20, "workers": 1, "shapley_samples": 8},
        "agent": {"strategies": list(STRATEGIES)},
        "service": {
            "start_bar": 300,
            "replay_speed": 0.0,
            "bootstrap_model": False,
            "port": 0,
            "heartbeat_s": 1.0,
            **service,
        },
    }
    return Settings.model_validate(sections)


def install_model(
    store: Store,
    settings: Settings,
    *,
    strategies: Sequence[str] = STRATEGIES,
    lookback_bars: int = 16,
    seed: int = 0,
    live: bool = True,
) -> str:
    """Register a live model whose policy is a seeded linear layer; return its id."""
    spec = PolicySpec(tuple(strategies), lookback_bars, "discrete", LEVELS)
    metadata = {
        "algorithm": "ppo",
        "features": ["scaled_return", "vol_ratio", "volume_change"],
        **spec.to_metadata(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("agora.json", json.dumps(metadata, sort_keys=True))
        archive.writestr("weights.txt", f"linear policy, seed {seed}")
    model_id, path = registry.write_model_file(buffer.getvalue(), registry.models_dir(settings))
    rng = np.random.default_rng(seed)
    n_inputs = metadata["observation_size"]
    weight = rng.normal(size=(n_inputs, len(LEVELS))).astype(np.float32)
    bias = np.zeros(len(LEVELS), dtype=np.float32)
    policy = NumpyPolicy([DenseLayer(weight, bias, "identity")], "argmax")
    save_policy_cache(policy, policy_cache_path(policy_cache_dir(settings), model_id))
    registry.register(
        store,
        registry.ModelRecord(
            id=model_id,
            created_ms=int(time.time() * 1000),
            algorithm="ppo",
            series={"source": "replay-synthetic", "symbol": "SYN/USD", "timeframe": "1h"},
            hyperparameters={},
            config_hash=settings.config_hash(),
            data_hash="0" * 64,
            strategies=list(strategies),
            seeds=[seed],
            metrics={},
            path=str(path),
        ),
    )
    if live:
        with store.transaction() as conn:
            conn.execute("UPDATE models SET status = 'retired' WHERE status = 'live'")
            conn.execute("UPDATE models SET status = 'live' WHERE id = ?", [model_id])
    return model_id


def prepare(settings: Settings, **model: Any) -> str:
    """Create the store of `settings` with a live model; return the model id."""
    with Store(settings.data.database_path) as store:
        return install_model(store, settings, **model)


def events(text: str, name: str | None = None) -> list[dict[str, Any]]:
    """Parse JSON-lines log text (optionally only the events called `name`)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        data = json.loads(line)
        if name is None or data.get("event") == name:
            found.append(data)
    return found


class Started:
    """A started runtime and the text of its log."""

    def __init__(self, runtime: ServiceRuntime, stream: io.StringIO) -> None:
        self.runtime = runtime
        self.stream = stream

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return events(self.stream.getvalue(), name)


StartRuntime = Callable[..., Started]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Small service settings in the test's directory."""
    return service_settings(tmp_path / "data")


@pytest.fixture
def start_runtime() -> Iterator[StartRuntime]:
    """Start runtimes (installing a live model unless `model=False`); close them afterwards.

    `model` may also be a dict of `install_model` options; other keywords go to the runtime.
    """
    started: list[ServiceRuntime] = []

    def start(
        settings: Settings, *, model: bool | dict[str, Any] = True, **options: Any
    ) -> Started:
        if model:
            prepare(settings, **(model if isinstance(model, dict) else {}))
        stream = io.StringIO()
        runtime = ServiceRuntime(settings, log=ServiceLog(stream=stream), **options)
        started.append(runtime)
        runtime.start()
        return Started(runtime, stream)

    yield start
    for runtime in started:
        if runtime.store is not None or runtime.backend is not None:
            runtime.close()
