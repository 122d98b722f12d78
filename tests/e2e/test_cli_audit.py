"""`agora audit verify` and `agora audit show` as a user runs them, on anvil and embedded."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent.audit.trail import AuditTrail
from agent.chain.backends import connect
from agent.chain.deploy import deploy_all
from agent.config import load_settings
from agent.store import Store
from tests.e2e.conftest import Run
from tests.unit.audit.conftest import sample_fields

N = 12


def _log_trail(workdir: Path, n: int = N) -> str:
    """Log n decisions on the configured chain through the library; return the log address."""
    settings = load_settings(workdir / "config.yaml")
    with (
        Store(settings.data.database_path) as store,
        connect(settings.chain, settings.data.dir) as backend,
    ):
        address = deploy_all(backend, store, settings).decision_log
        trail = AuditTrail.on_chain(store, backend, address, batch_size=5)
        for i in range(n):
            trail.append(sample_fields(i))
        trail.flush()
    return address


def _tamper(workdir: Path, seq: int) -> None:
    with sqlite3.connect(workdir / "data" / "agora.db") as db:
        (text,) = db.execute("SELECT record FROM decisions WHERE seq = ?", [seq]).fetchone()
        data = json.loads(text)
        data["target_exposure_e9"] = 123
        db.execute("UPDATE decisions SET record = ? WHERE seq = ?", [json.dumps(data), seq])


@pytest.fixture
def anvil_workdir(workdir: Path) -> Path:
    (workdir / "config.yaml").write_text("data:\n  dir: data\nchain:\n  backend: anvil\n")
    return workdir


def test_verify_and_show_on_a_persistent_anvil_chain(anvil_workdir: Path, agora: Run) -> None:
    address = _log_trail(anvil_workdir)

    result = agora("audit", "verify", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["decision_log"] == address
    assert (report["stored"], report["onchain"], report["verified"]) == (N, N, N)
    assert report["head_onchain"] == report["head_recomputed"]

    result = agora("audit", "show", "3", "--json")
    assert result.returncode == 0, result.stderr
    proof = json.loads(result.stdout)
    assert proof["matches"] is True
    assert proof["record"]["seq"] == 3
    assert proof["onchain_hash"] == proof["stored_hash"] == proof["recomputed_hash"]
    assert proof["tx_hash"].startswith("0x") and proof["block_number"] > 0
    assert proof["onchain_count"] == N and proof["head"] == report["head_onchain"]

    result = agora("audit", "show", "3")
    assert result.returncode == 0, result.stderr
    assert proof["stored_hash"] in result.stdout and proof["tx_hash"] in result.stdout
    assert "MATCHES" in result.stdout

    _tamper(anvil_workdir, 7)
    result = agora("audit", "verify")
    assert result.returncode == 1, result.stderr
    assert "MISMATCH at seq 7 (altered_record)" in result.stdout
    assert "7 of 12 stored decisions verified" in result.stdout


def test_verify_in_another_process_checks_the_embedded_chain_file_without_replay(
    workdir: Path, agora: Run
) -> None:
    _log_trail(workdir, 6)
    assert (workdir / "data" / "chain" / "embedded.sqlite").is_file()
    result = agora("audit", "verify")
    assert result.returncode == 0, result.stderr
    assert "OK: 6 decisions verified" in result.stdout
    assert "replay" not in (result.stdout + result.stderr).lower()

    _tamper(workdir, 2)
    result = agora("audit", "verify", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert (report["mismatch"]["seq"], report["mismatch"]["kind"]) == (2, "altered_record")


def test_show_refuses_a_negative_seq_as_a_usage_error(workdir: Path, agora: Run) -> None:
    result = agora("audit", "show", "-1")
    assert result.returncode == 2
