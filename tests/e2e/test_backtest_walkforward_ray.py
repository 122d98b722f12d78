"""`agora backtest` of a walk-forward on a Ray cluster: the windows train as Ray tasks on the
cluster's workers (the data and trainer through the object store), and the run equals the
local backend's, window for window and bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Run
from tests.support.ray_cluster import RayCluster

pytestmark = pytest.mark.slow

CONFIG = """\
data:
  dir: data
agent:
  net_arch: [8]
  n_steps: 64
  batch_size: 32
"""
SCENARIO = """\
description: a tiny walk-forward (3 windows)
data:
  source: synthetic
  timeframe: 1h
  synthetic: {seed: 5, bars: 1000}
  warmup_bars: 100
walkforward: {train_bars: 300, test_bars: 200, timesteps: 256, algorithm: ppo}
baselines: [buy-and-hold]
seed: 7
"""


def _tasks_run(cluster: RayCluster, name: str) -> int:
    """Count the tasks called `name` the cluster's workers ran: a worker's log marks each one
    with a `:task_name:` line (Ray's convention for streaming logs to the driver)."""
    logs = cluster.temp_dir / "session_latest" / "logs"
    marker = f":task_name:{name}"
    return sum(
        line.strip() == marker
        for path in logs.glob("worker-*.out")
        for line in path.read_text(errors="replace").splitlines()
    )


def _backtest(agora: Run, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = agora("backtest", "wf.yaml", "--json", "--no-report", extra_env=env)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_walk_forward_windows_train_on_ray_as_they_do_here(
    agora: Run, workdir: Path, ray_cluster: RayCluster
) -> None:
    (workdir / "config.yaml").write_text(CONFIG)
    (workdir / "wf.yaml").write_text(SCENARIO)
    local = _backtest(agora)
    before = _tasks_run(ray_cluster, "walk-forward")
    on_ray = _backtest(
        agora,
        {
            "AGORA__compute__backend": "ray",
            "AGORA__compute__address": "auto",
            **ray_cluster.env,
        },
    )

    assert _tasks_run(ray_cluster, "walk-forward") - before >= 3  # a task per window (or more)
    assert [w["window"] for w in local["windows"]] == [0, 1, 2]
    assert on_ray["windows"] == local["windows"]  # every window's return, trades, fingerprint
    assert on_ray["policies"] == local["policies"]  # the stitched run's metrics and fingerprint
    stitched = local["policies"][0]
    assert stitched["name"] == "walk-forward" and stitched["metrics"]["trades"] > 0
    assert len({w["fingerprint"] for w in local["windows"]}) == 3
    # the same run by the scenario's own identity: configuration and data
    for key in ("config_hash", "data_hash", "bars", "first_time", "last_time"):
        assert on_ray["metadata"][key] == local["metadata"][key]
