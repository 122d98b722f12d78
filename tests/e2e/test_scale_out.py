"""The same commands on a Ray cluster: `ray start --head` on loopback, joined with `address: auto`.

Each test drives the CLI as a user would, once with the local backend and once against the
cluster (`AGORA__compute__backend=ray`, `AGORA__compute__address=auto`, the cluster's
`RAY_ADDRESS` and token in the environment), and compares what they produce: the same model
ids for the same seeds, a worker killed mid-run changing nothing, an interrupted driver
leaving the store as it was, a small `agora tune` registering every trial's model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_train import TINY_CONFIG
from tests.support.ray_cluster import RayCluster

pytestmark = pytest.mark.slow

STEPS = "2048"
"""Timesteps per seed: a seed's task runs for a few seconds, long enough to be killed."""
TASK_TITLE = "ray::agora-train"
TRIAL_TITLE = "ray::ImplicitFunc.train"
"""The process title of a worker while it runs an `agora tune` trial (Ray Tune's name)."""
"""The process title of a worker while it runs one of `agora train`'s seed tasks."""


@pytest.fixture(scope="module")
def trained_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic market (the CLI train tests'), synthesized once for the module."""
    root = tmp_path_factory.mktemp("market")
    (root / "config.yaml").write_text(TINY_CONFIG)
    synth = _run(root, {}, "data", "synth", "--bars", "900", "--seed", "3")
    assert synth.returncode == 0, synth.stderr
    return root


@pytest.fixture
def market(trained_market: Path, tmp_path: Path) -> Path:
    """A fresh copy of the market's directory (its own store, no models)."""
    shutil.copy(trained_market / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(trained_market / "data", tmp_path / "data")
    return tmp_path


@pytest.fixture(scope="module")
def local_ids(trained_market: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The model ids `agora train --seeds 3` gives on the local backend."""
    copy = tmp_path_factory.mktemp("local")
    shutil.copy(trained_market / "config.yaml", copy / "config.yaml")
    shutil.copytree(trained_market / "data", copy / "data")
    result = _run(copy, {}, "train", "--seeds", "3", "--timesteps", STEPS, "--json")
    assert result.returncode == 0, result.stderr
    return [run["model_id"] for run in json.loads(result.stdout)["runs"]]


def _env(cluster: RayCluster | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGORA__", "RAY_"))}
    env["COLUMNS"] = "200"
    if cluster is not None:
        env.update(cluster.env)
        env.update({"AGORA__compute__backend": "ray", "AGORA__compute__address": "auto"})
    return env


def _run(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=directory,
        env=env or _env(None),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _start(directory: Path, cluster: RayCluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", *args],
        cwd=directory,
        env=_env(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_tasks(
    cluster: RayCluster, process: subprocess.Popen[str], title: str = TASK_TITLE
) -> list[int]:
    """Wait until workers run the command's tasks (seed tasks by default); return their PIDs."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        running = cluster.processes(title)
        if running:
            return running
        time.sleep(0.05)
    raise AssertionError(f"no {title} task started within 120 s")


def _dump(directory: Path) -> list[str]:
    """Every row of every table of the store, as SQL (what 'the store as it was' means), but
    the signal cache: a memo of strategy outputs by code and data hash, filled when the data
    set is first built, whatever the command does next."""
    with sqlite3.connect(directory / "data" / "agora.db") as conn:
        return [line for line in conn.iterdump() if 'INTO "signal_cache"' not in line]


def _model_ids(directory: Path) -> list[str]:
    listed = _run(directory, {}, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return sorted(row["id"] for row in json.loads(listed.stdout))


def test_train_on_the_cluster_gives_the_local_backends_model_ids(
    ray_cluster: RayCluster, market: Path, local_ids: list[str]
) -> None:
    result = _run(
        market, _env(ray_cluster), "train", "--seeds", "3", "--timesteps", STEPS, "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [run["model_id"] for run in report["runs"]] == local_ids
    assert [run["seed"] for run in report["runs"]] == [0, 1, 2]
    assert "3/3 seeds trained" in result.stderr
    assert _model_ids(market) == sorted(local_ids)


def test_a_worker_killed_mid_task_is_retried_and_changes_nothing(
    ray_cluster: RayCluster, market: Path, local_ids: list[str]
) -> None:
    process = _start(market, ray_cluster, "train", "--seeds", "3", "--timesteps", STEPS, "--json")
    victim = _wait_for_tasks(ray_cluster, process)[0]
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert [run["model_id"] for run in json.loads(stdout)["runs"]] == local_ids
    assert _model_ids(market) == sorted(local_ids)
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # it really died


def test_an_interrupted_driver_cancels_its_tasks_and_leaves_the_store_as_it_was(
    ray_cluster: RayCluster, market: Path
) -> None:
    before = _dump(market)
    models = sorted(p.name for p in (market / "data").rglob("*.zip"))
    process = _start(market, ray_cluster, "train", "--seeds", "3", "--timesteps", STEPS, "--json")
    _wait_for_tasks(ray_cluster, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert _dump(market) == before
    assert sorted(p.name for p in (market / "data").rglob("*.zip")) == models
    deadline = time.monotonic() + 30
    while ray_cluster.processes(TASK_TITLE) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_cluster.processes(TASK_TITLE) == [], "seed tasks kept running"


SMALL_SPACE = """\
name: small
trials: 8
seeds_per_trial: 1
searcher: optuna
seed: 3
timesteps: 256
space:
  agent.learning_rate: {loguniform: [0.0001, 0.001]}
  agent.turnover_penalty: {uniform: [0.0, 0.006]}
  agent.lookback_bars: {int: [2, 8]}
  agent.exposure_levels: {choice: [[0.0, 1.0], [0.0, 0.5, 1.0]]}
"""


def test_a_small_tune_on_the_cluster_registers_every_trials_model(
    ray_cluster: RayCluster, market: Path
) -> None:
    (market / "space.yaml").write_text(SMALL_SPACE)
    result = _run(market, _env(ray_cluster), "tune", "space.yaml", "--json")
    assert result.returncode == 0, result.stderr
    study: dict[str, Any] = json.loads(result.stdout)
    trials = study["trials"]
    assert len(trials) == 8 and all(t["status"] == "ok" for t in trials), trials
    assert study["backend"] == "ray (auto)"
    # chosen on validation only: the best score, and only its model was tested
    best = max(trials, key=lambda t: t["score"])
    assert study["chosen_trial"] == best["trial_id"]
    assert study["chosen_model"] in best["model_ids"]
    assert study["test"]["bars"] > 0
    # every trial's model is registered with its study and trial; only the chosen one tested
    ids = [m for t in trials for m in t["model_ids"]]
    assert _model_ids(market) == sorted(set(ids))
    for trial in trials:
        shown = _run(market, {}, "models", "show", trial["model_ids"][0], "--json")
        metrics = json.loads(shown.stdout)["metrics"]
        assert metrics["tune"]["study"] == study["id"]
        assert metrics["tune"]["trial"] == trial["trial_id"]
        assert ("test" in metrics) == (trial["trial_id"] == study["chosen_trial"])
        hyper = json.loads(shown.stdout)["hyperparameters"]
        assert hyper["learning_rate"] == pytest.approx(trial["params"]["agent.learning_rate"])
        assert hyper["env"]["lookback_bars"] == trial["params"]["agent.lookback_bars"]
    # recorded in the store, and reported
    with sqlite3.connect(market / "data" / "agora.db") as conn:
        (stored,) = conn.execute("SELECT id, chosen_model, report_path FROM tune_studies")
        rows = conn.execute("SELECT trial_id, status FROM tune_trials").fetchall()
    assert stored[:2] == (study["id"], study["chosen_model"])
    assert sorted(r[0] for r in rows) == sorted(t["trial_id"] for t in trials)
    report = (market / stored[2]).read_text()
    assert all(t["trial_id"] in report for t in trials) and "best so far" in report


def test_an_interrupted_tune_exits_at_once_and_records_nothing(
    ray_cluster: RayCluster, market: Path
) -> None:
    (market / "space.yaml").write_text(SMALL_SPACE.replace("timesteps: 256", "timesteps: 4096"))
    before = _dump(market)
    process = _start(market, ray_cluster, "tune", "space.yaml", "--json")
    _wait_for_tasks(ray_cluster, process, TRIAL_TITLE)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().endswith("interrupted") and stdout == ""
    assert _dump(market) == before
    assert list((market / "data").rglob("*.zip")) == []
    deadline = time.monotonic() + 30
    while ray_cluster.processes(TRIAL_TITLE) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_cluster.processes(TRIAL_TITLE) == [], "trials kept running"
