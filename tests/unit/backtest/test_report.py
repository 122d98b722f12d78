"""Outputs of a run: JSON with metadata, a self-contained HTML report, a row in the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.backtest import report
from agent.backtest.report import BacktestRun
from agent.backtest.runner import run_scenario, write_outputs
from agent.backtest.scenario import Scenario
from agent.config import Settings
from agent.errors import UsageError
from agent.store import Store
from strategies import MACrossover, RSIReversion

SCENARIO = Scenario.model_validate(
    {
        "name": "unit",
        "data": {"source": "synthetic", "synthetic": {"bars": 700, "seed": 3}},
        "policy": {"strategy": "ma-crossover"},
        "seed": 9,
    }
)
METADATA_KEYS = {
    "config_hash",
    "data_hash",
    "model_id",
    "strategy_hashes",
    "seed",
    "code_version",
}


@pytest.fixture(scope="module")
def run() -> BacktestRun:
    return run_scenario(SCENARIO, Settings(), strategies=[MACrossover, RSIReversion])


def test_a_run_compares_the_policy_with_every_strategy_and_baseline(run: BacktestRun) -> None:
    names = [r.name for r in run.results]
    assert names == ["ma-crossover", "rsi-reversion", "buy-and-hold", "flat", "random"]
    assert run.metadata.main_policy == "ma-crossover"
    assert {r.decisions for r in run.results} == {run.metadata.bars}
    assert run.signal_correlation is not None and run.signal_correlation.shape == (2, 2)


def test_metadata_identifies_the_run(run: BacktestRun) -> None:
    meta = run.metadata
    assert meta.seed == 9 and meta.model_id is None
    assert set(meta.strategy_hashes) == {"ma-crossover", "rsi-reversion"}
    assert re.fullmatch(r"[0-9a-f]{16}", meta.config_hash)
    assert re.fullmatch(r"[0-9a-f]{16}", meta.data_hash)
    assert meta.code_version.startswith("0.")
    again = run_scenario(SCENARIO, Settings(), strategies=[MACrossover, RSIReversion])
    assert (again.metadata.config_hash, again.metadata.data_hash) == (
        meta.config_hash,
        meta.data_hash,
    )
    assert [r.fingerprint for r in again.results] == [r.fingerprint for r in run.results]


def test_results_json_holds_metadata_metrics_and_curves(run: BacktestRun, tmp_path: Path) -> None:
    path = report.write_results(run, tmp_path / "results.json")
    document = json.loads(path.read_text())
    assert set(document["metadata"]) >= METADATA_KEYS
    first = document["policies"][0]
    assert first["name"] == "ma-crossover"
    assert {"fees_quote", "impact_quote", "gas_quote", "sharpe", "sqn"} <= set(first["metrics"])
    assert len(first["equity"]) == run.metadata.bars + 1
    assert document["scenario"]["seed"] == 9


def test_html_report_is_self_contained(run: BacktestRun, tmp_path: Path) -> None:
    text = report.write_report(run, tmp_path / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src\s*=", text, re.I)
    assert not re.search(r"<link[^>]+href\s*=\s*[\"']?https?:", text, re.I)
    assert not re.search(r"@import\s+url\(\s*[\"']?https?:", text, re.I)
    assert 'id="equity-chart"' in text and 'id="correlation-chart"' in text
    for key in METADATA_KEYS:
        assert key in text
    assert run.metadata.data_hash in text and run.metadata.config_hash in text


def test_runs_are_recorded_listed_and_shown(run: BacktestRun, tmp_path: Path) -> None:
    with Store(tmp_path / "agora.db") as store:
        outputs = write_outputs(run, SCENARIO, store, tmp_path / "reports")
        assert outputs.report_path is not None and outputs.report_path.exists()
        assert outputs.results_path is not None and outputs.results_path.exists()
        listed = report.list_runs(store)
        assert [r["run_id"] for r in listed] == [run.metadata.run_id]
        record = report.get_run(store, run.metadata.run_id[:12])
        assert record["data_hash"] == run.metadata.data_hash
        assert record["summary"]["policies"][0]["name"] == "ma-crossover"
        assert record["scenario"]["name"] == "unit"
        with pytest.raises(UsageError, match="no backtest run"):
            report.get_run(store, "nope")


def test_table_rows_format_every_column(run: BacktestRun) -> None:
    rows = report.table_rows(run)
    assert len(rows) == len(run.results)
    assert all(len(row) == 2 + len(report.TABLE_COLUMNS) for row in rows)
    flat = rows[[r.name for r in run.results].index("flat")]
    assert flat[2] == "0.00%"  # the flat baseline neither gains nor loses
