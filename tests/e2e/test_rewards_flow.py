"""The issue's "done when": measured contribution pays the informative strategy, not the noise.

A synthetic market with a planted component; two strategies, the planted oracle (which reads
it) and pure noise; a small PPO policy trained with strategy dropout and promoted; then
`agora rewards run-epoch` on an epoch of the test split (never trained or validated on), which
measures, publishes and claims on the embedded chain.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.config import load_settings
from agent.learn import registry
from agent.learn.train import train
from agent.store import Store
from tests.e2e.conftest import Run

EPOCH_BARS = 400
BARS = 4_000
TEST_EPOCH = 8
"""Bars 3200-3599: the first epoch inside the test split (the last 20% of the bars)."""

CONFIG = f"""
data:
  dir: data
market:
  synthetic:
    seed: 7
    bars: {BARS}
    planted:
      information_coefficient: 0.3
      half_life_bars: 4.0
dex:
  fee_bps: 5
  gas_price_gwei: 1.0
strategies:
  fixtures: [planted-oracle]
agent:
  strategies: [planted-oracle, noise]
  timesteps: 60000
  eval_every_steps: 20000
  strategy_dropout: 0.3
  turnover_penalty: 0.002
rewards:
  epoch_bars: {EPOCH_BARS}
  workers: 2
"""


@pytest.mark.slow
def test_the_informative_strategy_earns_the_epoch_and_noise_next_to_nothing(
    workdir: Path, agora: Run
) -> None:
    started = time.perf_counter()
    (workdir / "config.yaml").write_text(CONFIG)
    synth = agora("data", "synth")
    assert synth.returncode == 0, synth.stderr

    settings = load_settings(workdir / "config.yaml", environ={})
    with Store(settings.data.database_path) as store:
        report = train(settings, store)
        registry.promote(store, settings, report.runs[0].model_id, force=True)
    trained = time.perf_counter()

    run = agora("rewards", "run-epoch", str(TEST_EPOCH), "--claim", "--json")
    assert run.returncode == 0, run.stderr
    epoch = json.loads(run.stdout)
    assert epoch["status"] == "published" and epoch["computed_now"]
    assert (epoch["start_bar"], epoch["end_bar"]) == (3_200, 3_600)
    assert epoch["attribution"]["method"] == "exact"
    amounts = {a["strategy"]: int(a["amount"]) for a in epoch["allocations"]}
    total = int(epoch["total"])
    contributions = {a["strategy"]: a["contribution"] for a in epoch["allocations"]}
    message = f"contributions {contributions}, amounts {amounts}, total {total}"
    assert amounts["planted-oracle"] > total / 2, message
    assert amounts["noise"] <= total / 10, message
    assert contributions["planted-oracle"] > 0, message
    assert all(c["tx"] for c in epoch["claims"]) and len(epoch["claims"]) >= 1

    again = agora("rewards", "run-epoch", str(TEST_EPOCH), "--json")  # a new embedded chain
    assert again.returncode == 0, again.stderr
    replay = json.loads(again.stdout)
    assert not replay["computed_now"] and replay["root"] == epoch["root"]

    status = agora("rewards", "status", "--json")
    assert status.returncode == 0, status.stderr
    board = {row["strategy"]: row for row in json.loads(status.stdout)["contributors"]}
    oracle = board["planted-oracle"]
    assert int(oracle["earned"]) == int(oracle["claimed"]) == amounts["planted-oracle"]
    assert int(oracle["unclaimed"]) == 0

    shown = agora("rewards", "show", str(TEST_EPOCH))
    assert shown.returncode == 0 and "planted-oracle" in shown.stdout, shown.stderr
    print(
        f"\nrewards flow: trained in {trained - started:.0f} s, "
        f"whole flow {time.perf_counter() - started:.0f} s; {message}"
    )


def test_rewards_commands_explain_what_is_missing(agora: Run) -> None:
    status = agora("rewards", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {
        "epochs": [],
        "contributors": [],
        "emitted": "0",
        "paid": "0",
        "carried": "0",
    }
    shown = agora("rewards", "show", "3")
    assert shown.returncode == 2 and "reward epoch 3 is not recorded" in shown.stderr
    claim = agora("rewards", "claim", "3")
    assert claim.returncode == 2 and "--all or at least one --contributor" in claim.stderr
    run = agora("rewards", "run-epoch", "3")
    assert run.returncode == 1 and "no live model" in run.stderr
