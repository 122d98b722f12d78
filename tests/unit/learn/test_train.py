"""Training: tiny PPO / A2C / DQN / SAC runs that train, save, reload and predict identically;
the model id is reproducible for a fixed seed; the test split is never used to choose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.env.trading_env import EnvConfig, TradingEnv
from agent.learn import registry
from agent.learn.dataset import Dataset
from agent.learn.diagnostics import paired_advantage
from agent.learn.inference import NumpyPolicy
from agent.learn.train import (
    ALGORITHMS,
    SeedResult,
    TrainReport,
    action_kind,
    train,
)
from tests.unit.learn.conftest import tiny_settings


def _observations(dataset: Dataset, settings: Any, algorithm: str, count: int = 300) -> np.ndarray:
    """Real observations from the test split, with random exposures mixed in."""
    data, start, end = dataset.env_data("test")
    env = TradingEnv(data, EnvConfig.from_settings(settings, action_kind(algorithm, settings)))
    obs, _ = env.reset(options={"start": start, "end": end})
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(min(count, end - start)):
        rows.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    batch = np.array(rows, dtype=np.float32)
    batch[:, -1] = rng.uniform(0.0, 1.0, len(batch)).astype(np.float32)
    return batch


@pytest.fixture(scope="module")
def runs(tiny_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny training run per algorithm (256 steps, a [16] network)."""
    directory = tmp_path_factory.mktemp("runs")
    out = {}
    for algorithm in ALGORITHMS:
        settings = tiny_settings(directory)
        report = train(settings, dataset=tiny_dataset, algorithm=algorithm, seeds=1)
        out[algorithm] = (settings, report)
    return out


@pytest.mark.parametrize("algorithm", ["ppo", "a2c", "dqn", "sac"])
def test_tiny_run_trains_saves_reloads_and_predicts_identically(
    runs: dict[str, Any], tiny_dataset: Dataset, algorithm: str
) -> None:
    settings, report = runs[algorithm]
    run: SeedResult = report.runs[0]
    path = Path(run.path)
    assert path.name == f"{run.model_id}.zip"
    assert registry.model_id_of_file(path) == run.model_id
    model = registry.load_model(path)
    assert type(model) is ALGORITHMS[algorithm]
    again = registry.load_model(path)
    observations = _observations(tiny_dataset, settings, algorithm)
    first, _ = model.predict(observations, deterministic=True)
    second, _ = again.predict(observations, deterministic=True)
    np.testing.assert_array_equal(first, second)
    # the fast numpy policy of the reloaded file acts the same as SB3 on it
    fast = NumpyPolicy.load(path).predict(observations)
    if algorithm == "sac":
        np.testing.assert_allclose(fast, first, rtol=0, atol=1e-5)
    else:
        np.testing.assert_array_equal(fast, first)


@pytest.mark.parametrize("algorithm", ["ppo", "dqn", "sac"])
def test_model_metadata_describes_the_observation(runs: dict[str, Any], algorithm: str) -> None:
    _, report = runs[algorithm]
    metadata = registry.read_metadata(report.runs[0].path)
    assert metadata["algorithm"] == algorithm
    assert metadata["action"] == {"dqn": "discrete", "sac": "continuous"}.get(algorithm, "discrete")
    assert metadata["strategies"] == ["planted-oracle", "noise:seed=1", "ts-momentum"]
    assert metadata["observation_size"] == 4 * 3 + 2 * 3 + 1


def test_model_id_is_reproducible_for_a_fixed_seed(
    runs: dict[str, Any], tiny_dataset: Dataset, tmp_path: Path
) -> None:
    _, first = runs["ppo"]
    second = train(tiny_settings(tmp_path), dataset=tiny_dataset, algorithm="ppo", seeds=1)
    assert second.runs[0].model_id == first.runs[0].model_id
    assert Path(second.runs[0].path).read_bytes() == Path(first.runs[0].path).read_bytes()


def test_another_seed_gives_another_model(
    runs: dict[str, Any], tiny_dataset: Dataset, tmp_path: Path
) -> None:
    _, first = runs["ppo"]
    other = train(tiny_settings(tmp_path, seed=1), dataset=tiny_dataset, algorithm="ppo")
    assert other.runs[0].seed == 1
    assert other.runs[0].model_id != first.runs[0].model_id


def test_several_seeds_report_mean_and_spread(tiny_dataset: Dataset, tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path, timesteps=128, eval_every_steps=64)
    report: TrainReport = train(settings, dataset=tiny_dataset, algorithm="a2c", seeds=2)
    assert [run.seed for run in report.runs] == [0, 1]
    stats = report.summary["test.total_return"]
    values = [run.test.total_return for run in report.runs]
    assert stats["mean"] == pytest.approx(np.mean(values))
    assert stats["std"] == pytest.approx(np.std(values, ddof=1))
    assert stats["min"] == min(values) and stats["max"] == max(values)


def test_checkpoint_is_chosen_without_the_test_split(
    runs: dict[str, Any], tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """Scrambling every bar of the test split changes the test metrics, never the model."""
    _, first = runs["ppo"]
    test = tiny_dataset.windows["test"]
    data = tiny_dataset.data
    rng = np.random.default_rng(1)
    scrambled_close = data.close.copy()
    scrambled_close[test.start :] *= np.exp(rng.normal(0, 0.05, test.bars).cumsum())
    scrambled = type(data)(
        open_time=data.open_time,
        close=scrambled_close,
        features=data.features,
        signals=data.signals,
        mask=data.mask,
        strategy_names=data.strategy_names,
    )
    other = Dataset(scrambled, tiny_dataset.windows, "scrambled", None, {})
    second = train(tiny_settings(tmp_path), dataset=other, algorithm="ppo")
    assert second.runs[0].model_id == first.runs[0].model_id
    assert second.runs[0].best_step == first.runs[0].best_step
    assert second.runs[0].test != first.runs[0].test


def test_paired_advantage_counts_standard_errors_of_the_difference() -> None:
    rng = np.random.default_rng(0)
    market = rng.normal(0.0, 0.01, 2_000)
    assert paired_advantage(market, market) == 0.0
    better = market + 0.001
    assert paired_advantage(better, market) == float("inf")
    noisy = market + rng.normal(0.0005, 0.01, 2_000)
    expected = (noisy - market).sum() / ((noisy - market).std(ddof=1) * np.sqrt(2_000))
    assert paired_advantage(noisy, market) == pytest.approx(expected)
    assert paired_advantage(market, None) == pytest.approx(
        market.sum() / (market.std(ddof=1) * np.sqrt(2_000))
    )


def test_unknown_algorithm_is_refused(tiny_dataset: Dataset, tmp_path: Path) -> None:
    from agent.errors import ModelError

    with pytest.raises(ModelError, match="unknown algorithm"):
        train(tiny_settings(tmp_path), dataset=tiny_dataset, algorithm="td3")


_OTHER_PROCESS = """
import sys
from pathlib import Path
from agent.learn.dataset import dataset_from_candles
from agent.learn.train import train
from tests.unit.learn.conftest import tiny_settings
from agent.config import SyntheticSettings
from agent.market.synthetic import generate
market = generate(SyntheticSettings(seed=3, bars=900), "1h")
settings = tiny_settings(Path(sys.argv[1]))
dataset = dataset_from_candles(market.candles, settings, hidden={"planted": market.planted})
print(train(settings, dataset=dataset, algorithm="ppo").runs[0].model_id)
"""


def test_model_id_is_reproducible_in_another_process(runs: dict[str, Any], tmp_path: Path) -> None:
    """Nothing process-specific (memory addresses, times) may leak into the model file."""
    import subprocess
    import sys

    root = Path(__file__).parents[3]
    result = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    _, first = runs["ppo"]
    assert result.stdout.strip().splitlines()[-1] == first.runs[0].model_id


def test_seeds_spread_over_a_backend_give_the_local_model_ids_and_register_together(
    tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """Each seed's task gets its own pickled copy of the data set and settings, runs out of
    order, and hands back bytes; the driver writes and registers them, in seed order."""
    from agent.learn.registry import list_models
    from agent.store import Store
    from tests.support.crossing import CrossingBackend

    settings = tiny_settings(tmp_path / "local", timesteps=128, eval_every_steps=64)
    local = train(settings, dataset=tiny_dataset, algorithm="ppo", seeds=2)
    spread_settings = tiny_settings(tmp_path / "spread", timesteps=128, eval_every_steps=64)
    backend = CrossingBackend()
    with Store(spread_settings.data.database_path) as store:
        spread = train(
            spread_settings, store, dataset=tiny_dataset, algorithm="ppo", seeds=2, backend=backend
        )
        registered = sorted(m.id for m in list_models(store))
    assert backend.tasks == 2
    assert [r.model_id for r in spread.runs] == [r.model_id for r in local.runs]
    assert [r.seed for r in spread.runs] == [0, 1]
    assert registered == sorted(r.model_id for r in local.runs)
    assert all(Path(r.path).exists() for r in spread.runs)


def test_a_failing_seed_registers_nothing_and_writes_no_model_file(
    tiny_dataset: Dataset, tmp_path: Path
) -> None:
    from agent.learn.registry import list_models
    from agent.store import Store
    from tests.support.crossing import CrossingBackend

    class FailsLast(CrossingBackend):
        def map(self, fn: Any, shared: Any, items: Any, **kwargs: Any) -> list[Any]:
            done = [fn(shared, item) for item in items[:-1]]
            raise RuntimeError(f"worker lost after {len(done)} seeds")

    settings = tiny_settings(tmp_path, timesteps=128, eval_every_steps=64)
    with Store(settings.data.database_path) as store:
        with pytest.raises(RuntimeError, match="after 1 seeds"):
            train(
                settings, store, dataset=tiny_dataset, algorithm="ppo", seeds=2, backend=FailsLast()
            )
        assert list_models(store) == []
    assert list(tmp_path.rglob("*.zip")) == []
