"""`agora strategies …` as a contributor runs it: new → validate → submit → list, and refusals.

Every command is its own process, so the chain is anvil with its state persisted in the data
directory: each command starts the node from that state and saves it on exit, and `deploy_all`
finds Agora's contracts again through the addresses recorded in the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Run

CONTRIBUTOR = "0x00000000000000000000000000000000000000bb"
HOSTILE = Path(__file__).parents[1] / "data" / "hostile_plugins"
CONFIG = """\
data:
  dir: data
chain:
  backend: anvil
  anvil_persist: true
strategies:
  plugin_dir: plugins
  memory_mb: 768
  reference_bars: 1000
"""


@pytest.fixture
def contributor_dir(workdir: Path) -> Path:
    (workdir / "config.yaml").write_text(CONFIG)
    return workdir


def test_new_validate_submit_then_list_shows_the_registered_version(
    agora: Run, contributor_dir: Path
) -> None:
    created = agora("strategies", "new", "buying-pressure", "--dir", "work")
    assert created.returncode == 0, created.stderr
    plugin = contributor_dir / "work" / "buying_pressure.py"
    assert plugin.is_file() and (contributor_dir / "work" / "test_buying_pressure.py").is_file()

    checked = agora("strategies", "validate", "work/buying_pressure.py")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAIL" not in checked.stdout
    assert "buying-pressure: passed" in checked.stdout

    submitted = agora(
        "strategies", "submit", "work/buying_pressure.py", "--contributor", CONTRIBUTOR, "--json"
    )
    assert submitted.returncode == 0, submitted.stderr
    result = json.loads(submitted.stdout)
    assert (result["name"], result["version"], result["chain_key"]) == (
        "buying-pressure",
        1,
        "anvil:31337",
    )
    installed = contributor_dir / "plugins" / "buying_pressure.py"
    assert result["installed_path"] == str(installed)
    assert installed.read_bytes() == plugin.read_bytes()

    listed = agora("strategies", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = [e for e in json.loads(listed.stdout) if e["name"] == "buying-pressure"]
    assert (entry["status"], entry["origin"], entry["code_hash"]) == (
        "OK",
        f"file:{installed}",
        result["code_hash"],
    )
    assert entry["registered"]["version"] == 1
    assert entry["registered"]["payout"] == CONTRIBUTOR
    assert entry["code_registered"] is True

    again = agora("strategies", "submit", str(installed), "--contributor", CONTRIBUTOR)
    assert again.returncode == 1
    assert "already registered as version 1" in again.stderr


def test_validate_of_a_hostile_plugin_exits_1_naming_the_reason(
    agora: Run, contributor_dir: Path
) -> None:
    checked = agora("strategies", "validate", str(HOSTILE / "lookahead_shift.py"))
    assert checked.returncode == 1
    lines = checked.stdout.splitlines()
    failures = [line.strip() for line in lines if line.strip().startswith("FAIL")]
    assert len(failures) == 1
    assert failures[0].startswith("FAIL causality: looks ahead: its signal at bar ")
    assert "lookahead-shift: failed 1 check(s)" in checked.stdout


def test_submit_with_a_bad_contributor_address_exits_2(agora: Run, contributor_dir: Path) -> None:
    plugin = HOSTILE / "lookahead_shift.py"
    refused = agora("strategies", "submit", str(plugin), "--contributor", "0xnot-an-address")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: contributor address '0xnot-an-address' is not an")
    assert not (contributor_dir / "plugins").exists()


LOOKAHEAD = Path(__file__).parents[1] / "data" / "lookahead_plugins"
SCENARIO = """\
name: peeking
data:
  source: synthetic
  synthetic: {seed: 5, bars: 3500}
strategies: [peek-off-grid, honest-momentum]
baselines: [buy-and-hold]
"""


def test_a_backtest_quarantines_a_lookahead_plugin_and_list_shows_its_first_bad_bar(
    agora: Run, contributor_dir: Path
) -> None:
    (contributor_dir / "plugins").mkdir()
    for name in ("peek_off_grid.py", "honest_momentum.py"):
        (contributor_dir / "plugins" / name).write_bytes((LOOKAHEAD / name).read_bytes())
    (contributor_dir / "peeking.yaml").write_text(SCENARIO)
    backtest = agora("backtest", "run", "peeking.yaml")
    assert backtest.returncode == 0, backtest.stderr
    assert "quarantined: looks ahead" in backtest.stdout + backtest.stderr

    listed = agora("strategies", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    caught = entries["peek-off-grid"]
    assert caught["status"] == "QUARANTINED"
    assert isinstance(caught["first_bad_bar"], int)
    assert f"first offending bar {caught['first_bad_bar']} " in caught["error"]
    assert entries["honest-momentum"]["status"] == "OK"

    table = agora("strategies", "list")
    assert table.returncode == 0, table.stderr
    assert "QUARANTINED" in table.stdout
    assert f"first offending bar {caught['first_bad_bar']} " in table.stdout
