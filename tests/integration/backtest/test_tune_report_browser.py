"""The `agora tune` HTML report opens in headless Chromium, offline, with no error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from agent.backtest.tune_report import best_settings_yaml, trial_rows, write_report
from tests.support.browser import rendered_page


def _study() -> dict[str, Any]:
    """A study shaped as `Study.as_dict()` writes it: 6 trials, one failed, one chosen."""
    space = {
        "agent.learning_rate": {"loguniform": [0.0001, 0.001]},
        "agent.exposure_levels": {"choice": [[0.0, 1.0], [0.0, 0.5, 1.0]]},
    }
    trials = []
    for number in range(1, 7):
        ok = number != 4
        trials.append(
            {
                "number": number,
                "trial_id": f"t{number:07d}",
                "params": {
                    "agent.learning_rate": 1e-4 * number,
                    "agent.exposure_levels": [0.0, 1.0] if number % 2 else [0.0, 0.5, 1.0],
                },
                "status": "ok" if ok else "error",
                "score": (0.01 * ((number * 7) % 5) - 0.02) if ok else None,
                "validation": [{"total_return": 0.01 * number, "trades": number}] if ok else [],
                "model_ids": [f"{number:064x}"] if ok else [],
                "seconds": 3.0,
                "finished_ms": 1_700_000_000_000 + (7 - number) * 1000,
                "error": None if ok else "ModelError: no checkpoint",
            }
        )
    chosen = max((t for t in trials if t["score"] is not None), key=lambda t: t["score"])
    return {
        "id": "abc123def456",
        "space": {"name": "small", "searcher": "optuna", "seed": 0, "metric": "log_return",
                  "objective": "min", "seeds_per_trial": 1, "space": space},
        "space_path": "tune/small.yaml",
        "algorithm": "ppo",
        "timesteps": 256,
        "backend": "ray (auto)",
        "data_hash": "d" * 16,
        "strategies": ["planted-oracle", "noise:seed=1"],
        "started_ms": 1_700_000_000_000,
        "seconds": 42.0,
        "trials": trials,
        "chosen_trial": chosen["trial_id"],
        "chosen_model": chosen["model_ids"][0],
        "best_params": chosen["params"],
        "test": {"total_return": 0.031, "cost_fraction": 0.004, "trades": 12},
        "baselines": {"test.buy_and_hold": 0.02},
    }  # fmt: skip


def test_the_table_puts_the_best_first_marks_the_chosen_and_the_failed_last() -> None:
    study = _study()
    headers, rows = trial_rows(study)
    assert headers[2:4] == ["learning_rate", "exposure_levels"]
    scores = [float(row[4]) for row in rows if row[4]]
    assert scores == sorted(scores, reverse=True)
    assert rows[0][1].endswith(" *") and rows[0][1].startswith(study["chosen_trial"])
    assert rows[-1][-1] == "error: ModelError: no checkpoint"
    yaml_block = best_settings_yaml(study)
    assert yaml_block.startswith("agent:\n  learning_rate: ")
    assert "exposure_levels: [0.0, " in yaml_block


def test_tune_report_draws_its_charts_without_errors(tmp_path: Path) -> None:
    page = write_report(_study(), tmp_path / "report.html")
    dom, errors = rendered_page(page, tmp_path / "profile")
    for div in ("progress-chart", "parameters-chart"):
        chart = dom[dom.index(f'id="{div}"') :]
        assert 'class="main-svg"' in chart[:200_000], f"plotly did not render {div}"
    assert re.search(r'id="render-errors">\s*</div>', dom), "the page reported an error"
    assert "t0000006" in dom and "best so far" in dom
    assert not errors, errors
