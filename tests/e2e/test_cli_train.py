"""`agora train` and `agora models …` driven as a user would, on a tiny synthetic market."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Run

TINY_CONFIG = """\
data:
  dir: data
strategies:
  fixtures: [planted-oracle]
agent:
  strategies: [planted-oracle, "noise:seed=1"]
  lookback_bars: 4
  exposure_levels: [0.0, 1.0]
  episode_bars: 64
  timesteps: 256
  eval_every_steps: 128
  net_arch: [16]
  n_steps: 64
  batch_size: 32
"""


@pytest.fixture
def market(agora: Run, workdir: Path) -> Path:
    (workdir / "config.yaml").write_text(TINY_CONFIG)
    result = agora("data", "synth", "--bars", "900", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return workdir


def test_train_registers_a_model_that_list_show_promote_and_export_see(
    agora: Run, market: Path
) -> None:
    trained = agora("train", "--timesteps", "256", "--json")
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["algorithm"] == "ppo" and report["timesteps"] == 256
    (run,) = report["runs"]
    model_id = run["model_id"]
    assert len(model_id) == 64
    assert "validation" in trained.stderr  # one line per evaluation on stderr

    listed = agora("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["id"] == model_id and row["status"] == "candidate"

    shown = agora("models", "show", model_id[:10], "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["id"] == model_id
    assert record["strategies"] == ["planted-oracle", "noise:seed=1"]
    assert record["metrics"]["test"]["bars"] > 0
    assert record["hyperparameters"]["timesteps"] == 256

    exported = agora("models", "export", model_id[:10], "out/model.zip", "--json")
    assert exported.returncode == 0, exported.stderr
    target = market / "out" / "model.zip"
    assert json.loads(exported.stdout) == {"id": model_id, "path": "out/model.zip"}
    assert hashlib.sha256(target.read_bytes()).hexdigest() == model_id

    # 256 steps learn nothing: the gate refuses it (it must beat flat and buy-and-hold)
    refused = agora("models", "promote", model_id, "--json")
    verdict = json.loads(refused.stdout)
    assert refused.returncode == 1 and verdict["promoted"] is False
    assert verdict["reason"].startswith("does not beat")
    assert {c["reference"] for c in verdict["comparisons"]} == {"flat", "buy-and-hold"}
    assert json.loads(agora("models", "list", "--json").stdout)[0]["status"] == "candidate"
    promoted = agora("models", "promote", model_id, "--force", "--json")  # a deliberate override
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["promoted"] is True
    listed = json.loads(agora("models", "list", "--json").stdout)
    assert listed[0]["status"] == "live"


def test_train_prints_a_table_for_people(agora: Run, market: Path) -> None:
    result = agora("train", "--algo", "a2c", "--timesteps", "128", "--seeds", "2")
    assert result.returncode == 0, result.stderr
    assert "a2c, 128 steps per seed" in result.stdout
    assert "test.total_return: mean" in result.stdout
    shown = agora("models", "list")
    assert shown.returncode == 0 and "a2c" in shown.stdout


def test_unknown_algorithm_is_a_usage_error(agora: Run, market: Path) -> None:
    result = agora("train", "--algo", "td3")
    assert result.returncode == 2
    assert "--algo 'td3'" in result.stderr


def test_train_without_candles_says_how_to_get_some(agora: Run, workdir: Path) -> None:
    (workdir / "config.yaml").write_text(TINY_CONFIG)
    result = agora("train", "--timesteps", "64")
    assert result.returncode == 1
    assert "no candles stored" in result.stderr and "agora data synth" in result.stderr


def test_show_of_an_unknown_model_is_a_usage_error(agora: Run, market: Path) -> None:
    result = agora("models", "show", "abcdef123456")
    assert result.returncode == 2
    assert "no model with id" in result.stderr
