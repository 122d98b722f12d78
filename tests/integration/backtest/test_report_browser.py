"""The HTML report opens in a real headless Chromium, offline, draws its charts, logs no error.

Chromium comes from the system packages (`.ci/run` installs it). Where it is missing these
tests fail with the one command that installs it; they never skip.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.backtest import report
from agent.backtest.report import BacktestRun
from agent.backtest.runner import run_scenario
from agent.backtest.scenario import Scenario
from agent.config import Settings
from strategies import MACD, MACrossover, RSIReversion
from tests.support.browser import FLAGS, ChromiumMissing, find_chromium


def chromium() -> str:
    try:
        return find_chromium()
    except ChromiumMissing as missing:
        pytest.fail(str(missing))


def browse(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenario = Scenario.model_validate(
        {
            "name": "browser",
            "data": {"source": "synthetic", "synthetic": {"bars": 900, "seed": 4}},
            "policy": {"strategy": "ma-crossover"},
        }
    )
    run: BacktestRun = run_scenario(
        scenario, Settings(), strategies=[MACrossover, RSIReversion, MACD]
    )
    return report.write_report(run, tmp_path_factory.mktemp("report") / "report.html")


def test_report_draws_its_charts_without_errors(page: Path, tmp_path: Path) -> None:
    done = browse(
        page,
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--dump-dom",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    equity = dom[dom.index('id="equity-chart"') :]
    assert 'class="main-svg"' in equity, "plotly did not render the equity chart"
    lines = re.findall(r'class="js-line" d="([^"]*)"', equity)
    assert sum(len(d) > 200 for d in lines) >= 5, "the equity curves are not drawn"
    assert 'id="correlation-chart"' in dom
    assert re.search(r'id="render-errors">\s*</div>', dom), "the page reported an error"
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"error|uncaught", line, re.I)]
    assert not errors, errors


def test_report_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = browse(
        page,
        tmp_path / "profile",
        "--window-size=1280,1600",
        "--virtual-time-budget=10000",
        f"--screenshot={shot}",
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1600)
    pixels = np.asarray(image).reshape(-1, 3)
    not_white = float(np.mean(pixels.min(axis=1) < 235))
    assert not_white > 0.05, f"only {not_white:.1%} of the screenshot is not white"
    colours = len(np.unique(pixels, axis=0))
    assert colours > 50, "the screenshot has almost no colours: nothing was drawn"
