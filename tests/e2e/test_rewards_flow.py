"""`agora rewards` on a data directory with nothing to pay yet: each command says what is missing.

The paid flow (measure, publish, claim, run again, status, show) runs on the learning tests'
trained models: tests/e2e/test_learning.py.
"""

from __future__ import annotations

import json

from tests.e2e.conftest import Run


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
