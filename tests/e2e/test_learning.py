"""The learning issues' "Done when", measured through `agora train` with the shipped config.

The repository's config.yaml is used unchanged; the tests override only the market (seed,
size, drift, the planted component) and the strategy list (the planted-signal test strategy
has to be named), through `AGORA__` environment variables, as a user would.

1. On a synthetic market with a planted component (information coefficient 0.1, half-life 120
   bars) read by its test strategy `planted-oracle` among four noise strategies, PPO with the
   shipped defaults beats both buy-and-hold and staying flat on the held-out test split, net
   of every cost, for 3 training seeds of 3, on market seeds 7 and 11.
2. On a market where no strategy is informative (planted component disabled, only the noise
   strategies), the agent's costs stay below 1 % of the starting value on the test split for
   every seed, and the promotion gate refuses every model, so the service would trade a
   baseline rather than any of them.

The market: 30,000 hourly bars (18,000 train, 6,000 validation, 6,000 test), 60 % annual
volatility, fat tails, GARCH, regime drift 0.1 a year so that buy-and-hold is not a runaway.
docs/learning.md records what the defaults were chosen from, and what each choice bought.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Run

pytestmark = pytest.mark.slow

NOISE = [f"noise:seed={i}" for i in range(1, 5)]
SEEDS = 3
BUDGET_S = 600.0


REPO = Path(__file__).resolve().parents[2]


def _market(*, seed: int, planted: bool, strategies: list[str]) -> dict[str, str]:
    """The only overrides of the shipped config: the market and the strategy list."""
    return {
        "AGORA__market__synthetic__seed": str(seed),
        "AGORA__market__synthetic__bars": "30000",
        "AGORA__market__synthetic__regime_drift_annual": "0.1",
        "AGORA__market__synthetic__planted__enabled": str(planted).lower(),
        "AGORA__market__synthetic__planted__information_coefficient": "0.1",
        "AGORA__market__synthetic__planted__half_life_bars": "120.0",
        "AGORA__agent__strategies": json.dumps(strategies),
        "AGORA__strategies__fixtures": json.dumps(["planted-oracle"]),
    }


def _train(agora: Run, workdir: Path, overrides: dict[str, str]) -> tuple[dict[str, Any], float]:
    shipped = (REPO / "config.yaml").read_text()
    (workdir / "config.yaml").write_text(shipped)
    synth = agora("data", "synth", extra_env=overrides)
    assert synth.returncode == 0, synth.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA__")}
    started = time.perf_counter()
    # as the `agora` fixture does, with room for the whole training run
    result = subprocess.run(
        [sys.executable, "-m", "agent", "train", "--seeds", str(SEEDS), "--json"],
        cwd=workdir,
        env={**env, **overrides},
        capture_output=True,
        text=True,
        timeout=1_800,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), elapsed


def _table(report: dict[str, Any]) -> str:
    lines = []
    for run in report["runs"]:
        lines.append(
            f"seed {run['seed']}: test {run['test']['total_return']:+.2%} "
            f"(buy-and-hold {run['baselines']['test.buy_and_hold']:+.2%}, flat +0.00%), "
            f"costs {run['test']['cost_fraction']:.2%}, trades {run['test']['trades']}, "
            f"validation {run['validation']['total_return']:+.2%}, {run['seconds']:.0f}s"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("market_seed", [7, 11])
def test_the_shipped_defaults_learn_the_planted_edge_and_beat_buy_and_hold_and_flat(
    agora: Run, workdir: Path, market_seed: int
) -> None:
    overrides = _market(seed=market_seed, planted=True, strategies=["planted-oracle", *NOISE])
    report, elapsed = _train(agora, workdir, overrides)
    print(f"\nplanted market {market_seed}, {elapsed:.0f}s for {SEEDS} seeds\n{_table(report)}")
    assert len(report["runs"]) == SEEDS
    assert elapsed < BUDGET_S, f"{SEEDS} seeds took {elapsed:.0f}s, over the 10-minute budget"
    for run in report["runs"]:
        test_return = run["test"]["total_return"]
        assert test_return > run["baselines"]["test.buy_and_hold"], _table(report)
        assert test_return > 0.0, _table(report)  # flat earns exactly 0


def test_without_an_informative_strategy_the_defaults_sit_still_and_the_gate_refuses(
    agora: Run, workdir: Path
) -> None:
    overrides = _market(seed=7, planted=False, strategies=NOISE)
    report, elapsed = _train(agora, workdir, overrides)
    print(f"\nno informative strategy, {elapsed:.0f}s for {SEEDS} seeds\n{_table(report)}")
    assert len(report["runs"]) == SEEDS
    for run in report["runs"]:
        assert run["test"]["cost_fraction"] < 0.01, _table(report)
        promote = agora("models", "promote", run["model_id"], "--json", extra_env=overrides)
        verdict = json.loads(promote.stdout)
        assert promote.returncode == 1 and verdict["promoted"] is False, verdict
        assert verdict["reason"].startswith("does not beat"), verdict
