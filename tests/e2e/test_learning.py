"""The "Done when" of the learning issue, measured through `agora train` (slow).

1. On the synthetic market with the planted component at an information coefficient of 0.1,
   read by its test strategy (`planted-oracle`) among four noise strategies, PPO trained for 3
   seeds (all three within 10 minutes on 2 cores) beats both buy-and-hold and staying flat on
   the held-out test split, net of every cost, for 3 seeds out of 3.
2. On a synthetic market where no strategy is informative (planted component disabled, only
   the four noise strategies), the trained agent's costs stay below 1% of the starting value
   over the test split, for each of the 3 seeds (it learns not to churn).

Chosen settings, and why (fixed before looking at any test split; none is seed-specific):

- Market: the default synthetic market (seed 7, 1h bars, 60% annual volatility, fat tails,
  GARCH) with 30,000 bars (3.4 years: 18,000 train, 6,000 validation, 6,000 test), regime drift
  0.1 a year instead of 0.4 so that buy-and-hold is not a runaway, and a planted half-life of
  120 bars: at IC 0.1 the edge per bar is ~0.06% while a round trip costs ~0.7% (30 bps fee
  twice plus gas), so only a persistent component can pay for trading at all.
- Environment: look-back 4 bars, exposure levels {0, 1}, no strategy dropout, a turnover
  penalty of 0.003 per unit of exposure change in the training reward (close to the real cost
  of a trade, ~0.37%; evaluation and every reported number use the real costs only).
- PPO: the defaults ([64, 64] tanh MLP, lr 3e-4, n_steps 2048, gamma 0.99) with minibatches of
  256, 100,000 steps per seed, validation every 10,000 steps, checkpoint selection with a
  margin of one standard error (`agent.selection_margin`).

The same configuration serves both tests; only the market and the strategies differ. While
choosing it, both tests were also run on market seed 11 (a bear validation split and a bull
test split) and passed there too, 3 seeds of 3; nothing was tuned to seed 7's test split.
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


def _config(*, planted: bool, strategies: list[str]) -> str:
    return f"""\
data:
  dir: data
market:
  synthetic:
    seed: 7
    bars: 30000
    regime_drift_annual: 0.1
    planted:
      enabled: {str(planted).lower()}
      information_coefficient: 0.1
      half_life_bars: 120.0
agent:
  algorithm: ppo
  seed: 0
  seeds: {SEEDS}
  timesteps: 100000
  eval_every_steps: 10000
  selection_margin: 1.0
  strategies: {json.dumps(strategies)}
  lookback_bars: 4
  exposure_levels: [0.0, 1.0]
  strategy_dropout: 0.0
  turnover_penalty: 0.003
  batch_size: 256
"""


def _train(agora: Run, workdir: Path, config: str) -> tuple[dict[str, Any], float]:
    (workdir / "config.yaml").write_text(config)
    synth = agora("data", "synth")
    assert synth.returncode == 0, synth.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA__")}
    started = time.perf_counter()
    # as the `agora` fixture does, with room for the whole training run
    result = subprocess.run(
        [sys.executable, "-m", "agent", "train", "--json"],
        cwd=workdir,
        env=env,
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


def test_ppo_learns_the_planted_edge_and_beats_buy_and_hold_and_flat_on_test(
    agora: Run, workdir: Path
) -> None:
    report, elapsed = _train(
        agora, workdir, _config(planted=True, strategies=["planted-oracle", *NOISE])
    )
    print(f"\nplanted market, {elapsed:.0f}s for {SEEDS} seeds\n{_table(report)}")
    assert len(report["runs"]) == SEEDS
    assert elapsed < BUDGET_S, f"{SEEDS} seeds took {elapsed:.0f}s, over the 10-minute budget"
    for run in report["runs"]:
        test_return = run["test"]["total_return"]
        assert test_return > run["baselines"]["test.buy_and_hold"], _table(report)
        assert test_return > 0.0, _table(report)  # flat earns exactly 0


def test_without_an_informative_strategy_the_agent_learns_not_to_churn(
    agora: Run, workdir: Path
) -> None:
    report, elapsed = _train(agora, workdir, _config(planted=False, strategies=NOISE))
    print(f"\nno informative strategy, {elapsed:.0f}s for {SEEDS} seeds\n{_table(report)}")
    assert len(report["runs"]) == SEEDS
    for run in report["runs"]:
        assert run["test"]["cost_fraction"] < 0.01, _table(report)
