"""The `strategies evaluate` HTML report opens in headless Chromium, offline, with no error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.backtest.evaluation import evaluate_strategy, summary_rows, write_report
from agent.config import Settings
from tests.support.browser import rendered_page


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("evaluation")
    settings = Settings.model_validate(
        {
            "data": {"dir": str(folder / "data")},
            "strategies": {"reference_bars": 1500, "plugin_dir": str(folder / "plugins")},
        }
    )
    evaluation = evaluate_strategy(settings, "ts-momentum")
    return write_report(evaluation, summary_rows(evaluation), folder / "report.html")


def test_evaluation_report_draws_its_three_charts_without_errors(
    page: Path, tmp_path: Path
) -> None:
    dom, errors = rendered_page(page, tmp_path / "profile")
    for div in ("window-chart", "signal-chart", "overlap-chart"):
        chart = dom[dom.index(f'id="{div}"') :]
        assert 'class="main-svg"' in chart[:200_000], f"plotly did not render {div}"
    assert re.search(r'id="render-errors">\s*</div>', dom), "the page reported an error"
    assert not errors, errors
