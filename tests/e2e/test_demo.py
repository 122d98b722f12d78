"""`agora demo`, the README's first command, end to end with small sizes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Run

SMALL = {
    "AGORA__market__synthetic__bars": "700",
    "AGORA__service__start_bar": "500",
    "AGORA__service__bootstrap_timesteps": "256",
    "AGORA__agent__n_steps": "128",
    "AGORA__agent__batch_size": "32",
    "AGORA__agent__eval_every_steps": "256",
    "AGORA__rewards__epoch_bars": "50",
    "AGORA__rewards__workers": "1",
}


def test_demo_runs_the_whole_loop_and_its_checks_hold(agora: Run, workdir: Path) -> None:
    result = agora("demo", "--json", extra_env=SMALL)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    outcome = json.loads(result.stdout)
    assert outcome["ok"] is True
    assert outcome["data_clean"] and outcome["audit_ok"] and outcome["balances_match"]
    assert outcome["epoch"] == 10  # bars 500..549 of the replay: the first complete epoch
    assert outcome["decisions"] >= 50
    assert outcome["paid_total"] == outcome["claimed_total"]
    assert Path(workdir, outcome["report_html"]).is_file()

    # no harm done: whatever traded (a model that passed the gate, or the baseline chosen on
    # validation) did no worse over the traded bars than the better of flat and buy-and-hold,
    # within a tolerance: a policy chosen on the validation window cannot foresee these bars
    tolerance = 0.10
    better = max(outcome["flat_return"], outcome["hold_return"])
    assert outcome["policy_return"] >= better - tolerance, outcome
    if outcome["policy"].startswith("baseline:"):
        # no agent, no attribution: an epoch traded by a baseline pays nothing and carries all
        assert outcome["paid_total"] == 0 and outcome["carried_total"] > 0
        assert "baseline" in outcome["rewards_note"]
