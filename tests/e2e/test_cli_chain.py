"""`agora chain status` and `agora chain recover`: a lost embedded chain is refused, then rebuilt.

The embedded chain lives in `data/chain/embedded.sqlite`; each command below is its own process.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Run
from tests.e2e.test_cli_audit import _log_trail, _tamper


def _chain_file(workdir: Path) -> Path:
    return workdir / "data" / "chain" / "embedded.sqlite"


def test_a_deleted_chain_file_is_refused_then_recover_rebuilds_it(
    workdir: Path, agora: Run
) -> None:
    address = _log_trail(workdir, 6)
    status = agora("chain", "status", "--json")
    assert status.returncode == 0, status.stderr
    before = json.loads(status.stdout)
    assert before["contracts"]["decision_log"] == address and before["head_block"] > 0

    for path in _chain_file(workdir).parent.glob("embedded.sqlite*"):
        path.unlink()
    result = agora("audit", "verify")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "`agora chain recover`" in result.stderr
    assert not _chain_file(workdir).exists()  # the audit did not rebuild it

    result = agora("chain", "recover")
    assert result.returncode == 0, result.stderr
    assert "recovered the embedded chain" in result.stdout and "(missing)" in result.stdout
    assert "6 decisions" in result.stdout
    assert "CANNOT PROVE" in result.stdout and "self-consistent" in result.stdout

    result = agora("audit", "verify")
    assert result.returncode == 0, result.stderr
    assert "OK: 6 decisions verified" in result.stdout
    after = json.loads(agora("chain", "status", "--json").stdout)
    assert after["chain_key"] != before["chain_key"]  # a new chain: a new genesis

    result = agora("chain", "recover")
    assert result.returncode == 2 and "nothing to recover" in result.stderr


def test_recover_keeps_a_corrupt_chain_file_aside_and_the_audit_still_catches_tampering(
    workdir: Path, agora: Run
) -> None:
    _log_trail(workdir, 4)
    garbage = b"not a chain" * 500
    for path in _chain_file(workdir).parent.glob("embedded.sqlite*"):
        path.unlink()
    _chain_file(workdir).write_bytes(garbage)

    result = agora("audit", "verify")
    assert result.returncode == 1 and "corrupt" in result.stderr
    assert "`agora chain recover`" in result.stderr

    result = agora("chain", "recover", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["reason"].startswith("corrupt") and report["decisions_replayed"] == 4
    (kept,) = (Path(p) for p in report["moved_aside"])
    assert kept.read_bytes() == garbage and kept.name.startswith("embedded.corrupt-")

    _tamper(workdir, 1)
    result = agora("audit", "verify")
    assert result.returncode == 1 and "MISMATCH at seq 1" in result.stdout


def test_status_without_a_chain_says_so(workdir: Path, agora: Run) -> None:
    result = agora("chain", "status", "--json")
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["backend"] == "embedded" and state["exists"] is False
    assert not _chain_file(workdir).exists()
