"""`agora strategies evaluate` as a contributor runs it: a real signal, noise, and a copy.

No market is stored, so every run measures the reference data set (generated), whose planted
series the `planted-oracle` fixture reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Run

COPIES = Path(__file__).parents[1] / "data" / "copy_plugins"
CONFIG = """\
data:
  dir: data
strategies:
  plugin_dir: plugins
  memory_mb: 768
  reference_bars: 3000
  fixtures: [planted-oracle]
"""


@pytest.fixture
def contributor_dir(workdir: Path) -> Path:
    (workdir / "config.yaml").write_text(CONFIG)
    return workdir


def evaluate(agora: Run, target: str) -> dict[str, Any]:
    done = agora("strategies", "evaluate", target, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["generated"] is True and "generated synthetic data" in result["data"]
    assert result["contribution"] is None
    assert result["contribution_note"].startswith("not estimated: there is no live model")
    return result


def test_evaluate_shows_the_planted_signal_significant_and_positive_at_one_bar(
    agora: Run, contributor_dir: Path
) -> None:
    result = evaluate(agora, "planted-oracle")
    first = result["ic"][0]
    assert first["horizon_bars"] == 1
    assert first["ic"] > 0.05 and first["significant"]
    assert first["t_stat"] > result["significance"] == 2.0
    assert [ic["horizon_bars"] for ic in result["ic"]] == [1, 4, 24]
    assert len(result["windows"]) == 6 and result["consistency"] >= 0.8
    assert result["overlap"]["above_threshold"] is False

    table = agora("strategies", "evaluate", "planted-oracle")
    assert table.returncode == 0, table.stderr
    assert "significant" in table.stdout and "not estimated" in table.stdout
    assert "generated synthetic data" in table.stdout


def test_evaluate_finds_no_significant_ic_in_noise(agora: Run, contributor_dir: Path) -> None:
    result = evaluate(agora, "noise:seed=1")
    assert [ic["significant"] for ic in result["ic"]] == [False, False, False]
    assert result["half_life_bars"] is None
    assert result["overlap"]["r2"] < 0.1


def test_evaluate_of_a_near_copy_names_the_original_above_the_originality_limit(
    agora: Run, contributor_dir: Path
) -> None:
    report = contributor_dir / "copy.html"
    done = agora(
        "strategies",
        "evaluate",
        str(COPIES / "scaled_noisy_copy.py"),
        "--json",
        "--report",
        str(report),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["name"] == "gentle-trend"
    overlap = result["overlap"]
    assert overlap["threshold"] == 0.8 and overlap["r2"] >= 0.8 and overlap["above_threshold"]
    assert overlap["explained_by"][0] == "ma-crossover"
    assert result["report"] == str(report)
    page = report.read_text()
    for div in ("window-chart", "signal-chart", "overlap-chart"):
        assert f'id="{div}"' in page


def test_evaluate_of_a_missing_file_exits_2(agora: Run, contributor_dir: Path) -> None:
    done = agora("strategies", "evaluate", "nowhere.py")
    assert done.returncode == 2
    assert "no such plugin file: nowhere.py" in done.stderr


def test_evaluate_uses_the_stored_market_when_there_is_one(
    agora: Run, contributor_dir: Path
) -> None:
    stored = agora("data", "synth", "--bars", "1200")
    assert stored.returncode == 0, stored.stderr
    done = agora("strategies", "evaluate", "ma-crossover", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["generated"] is False
    assert result["data"] == "the stored market synthetic:SYN/USD:1h"
    assert result["bars"] == 1200
    assert "ma-crossover" not in result["overlap"]["alone"]  # not compared with itself
