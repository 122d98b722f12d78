"""docs/examples/verify_decision.py verifies a logged decision with only web3 and the address."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.audit.outbox import read_decision
from agent.audit.trail import AuditTrail
from agent.chain.backends import AnvilBackend
from agent.chain.deploy import deploy_all
from agent.config import Settings
from agent.store import Store
from tests.integration.audit.conftest import AuditChain, fill
from tests.unit.audit.test_docs_example_encoding import EXAMPLE, load_example


def test_the_example_confirms_a_logged_record_and_refuses_an_altered_one(
    audit_chain: AuditChain, store: Store
) -> None:
    example = load_example()
    trail = AuditTrail.on_chain(store, audit_chain.backend, audit_chain.log_address)
    fill(trail, 9)
    trail.flush()
    stored = read_decision(store, 4)
    assert stored is not None
    record = json.loads(stored.record_json)
    ok, mine, theirs = example.check(audit_chain.backend.w3, audit_chain.log_address, record)
    assert ok and mine == theirs == stored.hash
    record["signals_e9"][0] += 1
    ok, mine, theirs = example.check(audit_chain.backend.w3, audit_chain.log_address, record)
    assert not ok and theirs == stored.hash
    record = {**json.loads(stored.record_json), "seq": 99}  # beyond the log
    assert example.check(audit_chain.backend.w3, audit_chain.log_address, record)[2] is None


def test_the_example_script_runs_against_a_node(tmp_path: Path) -> None:
    with AnvilBackend() as backend, Store(tmp_path / "agora.db") as store:
        address = deploy_all(backend, store, Settings()).decision_log
        trail = AuditTrail.on_chain(store, backend, address, batch_size=3)
        fill(trail, 5)
        trail.flush()
        stored = read_decision(store, 2)
        assert stored is not None
        good = tmp_path / "decision.json"
        good.write_text(json.dumps({"record": json.loads(stored.record_json)}))
        bad_record = json.loads(stored.record_json)
        bad_record["trade"]["fee"] = str(int(bad_record["trade"]["fee"]) + 1)
        bad = tmp_path / "altered.json"
        bad.write_text(json.dumps(bad_record))

        def run(path: Path) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, str(EXAMPLE), str(path), "--rpc-url", backend.url]
            return subprocess.run(
                [*command, "--address", address], capture_output=True, text=True, timeout=60
            )

        result = run(good)
        assert result.returncode == 0, result.stderr
        assert f"record hash {stored.hash}" in result.stdout and "OK" in result.stdout
        result = run(bad)
        assert result.returncode == 1, result.stderr
        assert "MISMATCH" in result.stdout
    example = load_example()
    assert example.main([str(tmp_path / "missing.json"), "--rpc-url", "x", "--address", "y"]) == 2
