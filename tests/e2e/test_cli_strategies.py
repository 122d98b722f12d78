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
    assert f"first offending bar {caught['first_bad_bar']} " in caught["reason"]
    record = caught["quarantine"]
    assert record["first_bar"] == caught["first_bad_bar"]
    assert isinstance(record["first_bar_ms"], int)
    assert "on the full history but" in record["reason"]
    assert entries["honest-momentum"]["status"] == "OK"
    assert entries["honest-momentum"]["reason"] is None

    table = agora("strategies", "list", extra_env={"COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    assert "…" not in table.stdout
    row = _rows(table.stdout)["peek-off-grid"]
    assert row["status"] == "QUARANTINED"
    assert _words(row["reason"]) == _words(caught["reason"])


def _rows(table: str) -> dict[str, dict[str, str]]:
    """Read back a rich table (one row between rules) by name: each cell's lines joined."""
    header, *lines = [line for line in table.splitlines() if line.startswith(("┃", "│", "├"))]
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows: list[list[list[str]]] = []
    for line in lines:
        if line.startswith("├"):
            rows.append([])
            continue
        if not rows:
            rows.append([])
        rows[-1].append([cell.strip() for cell in line.strip("│").split("│")])
    joined = [
        {n: "".join(parts) for n, *parts in zip(names, *row, strict=True)} for row in rows if row
    ]
    return {cells["name"]: cells for cells in joined}


def _words(text: str) -> str:
    """Compare wrapped text: wrapping drops spaces at line ends, so compare without them."""
    return "".join(text.split())


def test_list_at_80_columns_shows_whole_origins_and_why_a_plugin_failed_to_load(
    agora: Run, workdir: Path
) -> None:
    deep = workdir.joinpath(
        "plugins", "contributed_by_the_community", "signals_under_review", "momentum_family", "v1"
    )
    deep.mkdir(parents=True)
    (deep / "honest_momentum.py").write_bytes((LOOKAHEAD / "honest_momentum.py").read_bytes())
    (deep / "import_error.py").write_bytes((HOSTILE / "import_error.py").read_bytes())
    (workdir / "config.yaml").write_text(f"data:\n  dir: data\nstrategies:\n  plugin_dir: {deep}\n")
    origin = f"file:{deep / 'honest_momentum.py'}"
    assert len(origin) > 100

    listed = agora("strategies", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    assert entries["honest-momentum"]["origin"] == origin
    (failed,) = [e for e in entries.values() if e["status"] == "LOAD FAILED"]
    assert "agora_nonexistent_dependency" in failed["reason"]

    table = agora("strategies", "list", extra_env={"COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    assert "…" not in table.stdout
    rows = _rows(table.stdout)
    assert rows["honest-momentum"]["origin"] == origin
    shown = rows[failed["name"]]
    assert shown["origin"] == failed["origin"]
    assert (shown["status"], _words(shown["reason"])) == ("LOAD FAILED", _words(failed["reason"]))
