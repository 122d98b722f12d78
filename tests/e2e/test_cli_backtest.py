"""`agora backtest`: the comparison table, the reports, the run records, scenario files."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Run

REPO = Path(__file__).resolve().parents[2]


def _synth(agora: Run) -> None:
    done = agora("data", "synth", "--bars", "1500", "--seed", "3")
    assert done.returncode == 0, done.stderr


def test_backtest_prints_the_table_and_writes_the_reports(agora: Run, workdir: Path) -> None:
    _synth(agora)
    done = agora("backtest", "--strategy", "ma-crossover")
    assert done.returncode == 0, done.stderr
    for name in ("ma-crossover", "rsi-reversion", "buy-and-hold", "flat", "random"):
        assert name in done.stdout
    for header in ("return", "Sharpe", "max DD", "fees $", "impact $", "gas $"):
        assert header in done.stdout
    report = next(line for line in done.stdout.splitlines() if line.startswith("report: "))
    html = workdir / report.removeprefix("report: ").strip()
    assert html.is_file() and html.parent.parent == workdir / "backtests" / "reports"
    results = json.loads((html.parent / "results.json").read_text())
    assert results["metadata"]["main_policy"] == "ma-crossover"
    assert results["metadata"]["data_hash"] and results["metadata"]["code_version"]

    listed = agora("backtest", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["run_id"] == results["metadata"]["run_id"]
    shown = agora("backtest", "show", run["run_id"][:15])
    assert shown.returncode == 0, shown.stderr
    assert f"run_id: {run['run_id']}" in shown.stdout and "ma-crossover" in shown.stdout


def test_backtest_json_and_cost_options(agora: Run) -> None:
    _synth(agora)
    done = agora("backtest", "--json", "--no-report", "--fee-bps", "5", "--gas-price", "0")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["metadata"]["costs"]["fee_bps"] == 5
    assert data["metadata"]["main_policy"] is None  # no model or strategy: comparison only
    hold = next(p for p in data["policies"] if p["name"] == "buy-and-hold")
    assert hold["metrics"]["gas_quote"] == 0.0 and hold["metrics"]["fees_quote"] > 0
    assert data["report"] is None
    assert json.loads(agora("backtest", "list", "--json").stdout) == []


def test_a_shipped_scenario_runs_by_name(agora: Run) -> None:
    scenario = REPO / "backtests" / "ma-crossover-synthetic.yaml"
    done = agora("backtest", str(scenario), "--no-report")
    assert done.returncode == 0, done.stderr
    assert "ma-crossover-synthetic" in done.stdout and "buy-and-hold" in done.stdout


def test_bad_scenarios_and_options_exit_2_naming_the_problem(agora: Run, workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("policy:\n  strategy: macd\ncosts:\n  fee: 30\n")
    done = agora("backtest", str(bad))
    assert done.returncode == 2
    assert "unknown key 'costs.fee'" in done.stderr
    both = agora("backtest", "--model", "live", "--strategy", "macd")
    assert both.returncode == 2 and "not both" in both.stderr


def test_a_missing_live_model_or_data_is_a_clear_runtime_error(agora: Run) -> None:
    empty = agora("backtest")
    assert empty.returncode == 1 and "agora data synth" in empty.stderr
    _synth(agora)
    live = agora("backtest", "--model", "live")
    assert live.returncode == 1 and "no live model" in live.stderr


def test_an_onchain_backtest_verifies_and_an_altered_record_is_caught(
    agora: Run, workdir: Path
) -> None:
    """`backtest --onchain` logs DecisionRecords; `audit verify --run` checks them, no replay."""
    import sqlite3

    done = agora("data", "synth", "--bars", "400", "--seed", "3")
    assert done.returncode == 0, done.stderr
    done = agora(
        "backtest", "--strategy", "ma-crossover", "--onchain", "--no-report", "--json",
        "--start", "2024-01-10T00:00:00Z",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    run_id = data["metadata"]["run_id"]
    main = next(p for p in data["policies"] if p["name"] == "ma-crossover")
    assert main["extra"]["execution"] == "onchain" and main["extra"]["decisions_logged"] > 100

    verified = agora("audit", "verify", "--run", run_id[:17], "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    logged = main["extra"]["decisions_logged"]
    assert report["ok"] and report["stored"] == report["onchain"] == logged
    assert report["head_onchain"] == main["extra"]["decision_log_head"]
    assert "replay" not in verified.stderr

    # alter one stored record of the run (its exposure), as someone editing the database would
    with sqlite3.connect(workdir / "data" / "agora.db") as db:
        (text,) = db.execute(
            "SELECT record FROM backtest_decisions WHERE run_id = ? AND seq = 57", [run_id]
        ).fetchone()
        record = json.loads(text)
        record["target_exposure_e9"] = 1_000_000_000 - record["target_exposure_e9"]
        db.execute(
            "UPDATE backtest_decisions SET record = ? WHERE run_id = ? AND seq = 57",
            [json.dumps(record), run_id],
        )
    caught = agora("audit", "verify", "--run", run_id)
    assert caught.returncode == 1
    assert "MISMATCH at seq 57" in caught.stdout
