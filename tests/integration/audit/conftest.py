"""Fixtures for the audit integration tests: Agora deployed on the embedded chain, fresh logs.

The deployment is made once per session with `deploy_all`; each test runs between an
`evm_snapshot` and an `evm_revert`, so it starts from an empty DecisionLog, with its own store.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from agent.audit.outbox import decision_log_contract
from agent.audit.record import DecisionRecord
from agent.audit.trail import AuditTrail
from agent.chain.backends import ChainBackend, EmbeddedBackend
from agent.chain.contracts import load_artifact
from agent.chain.deploy import Deployment, deploy_all
from agent.config import Settings
from agent.errors import ChainError
from agent.store import Store
from tests.unit.audit.conftest import sample_fields

GAS = 8_000_000


@dataclass
class AuditChain:
    """The embedded chain with Agora deployed, and helpers to build and tamper with trails."""

    backend: ChainBackend
    deployment: Deployment
    store_path: Path

    @property
    def log_address(self) -> str:
        return self.deployment.decision_log

    def log(self, address: str | None = None) -> Any:
        return decision_log_contract(self.backend, address or self.log_address)

    def fresh_log(self) -> str:
        """Deploy another DecisionLog (operator is admin and writer); return its address."""
        artifact = load_artifact("DecisionLog")
        return self.backend.deploy(artifact.abi, artifact.bytecode, self.backend.operator)

    def record_hashes(self, address: str, hashes: list[str]) -> None:
        """Log hashes directly (not through the outbox), as a tamperer with WRITER_ROLE would."""
        raw = [bytes.fromhex(h[2:]) for h in hashes]
        for start in range(0, len(raw), 100):
            call = self.log(address).functions.recordBatch(raw[start : start + 100])
            self.backend.transact(call, gas=GAS)


def fill(trail: AuditTrail, n: int, start: int = 0) -> list[DecisionRecord]:
    """Append the sample decisions `start` .. `start + n - 1` to a trail."""
    return [trail.append(sample_fields(i)) for i in range(start, start + n)]


@pytest.fixture(scope="session")
def audit_chain_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditChain]:
    path = tmp_path_factory.mktemp("audit") / "deployed.db"
    with EmbeddedBackend() as backend:
        with Store(path) as store:
            deployment = deploy_all(backend, store, Settings())
        yield AuditChain(backend, deployment, path)


@pytest.fixture
def audit_chain(audit_chain_session: AuditChain) -> Iterator[AuditChain]:
    """Agora as freshly deployed (empty DecisionLog), reverted after the test."""
    w3 = audit_chain_session.backend.w3
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        yield audit_chain_session
    finally:
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


@pytest.fixture
def store(audit_chain: AuditChain, tmp_path: Path) -> Iterator[Store]:
    """A database of its own that records the session deployment."""
    copy = tmp_path / "agora.db"
    shutil.copyfile(audit_chain.store_path, copy)
    with Store(copy) as opened:
        yield opened


class FlakyBackend(ChainBackend):
    """A backend whose transactions fail while `down` is set (before or after being mined).

    `lose_receipts` mines the transaction and then raises, as when the node dies between
    accepting a transaction and returning its receipt.
    """

    def __init__(self, inner: ChainBackend) -> None:
        super().__init__(inner.w3, inner.operator)
        self.inner = inner
        self.name = f"flaky-{inner.name}"
        self.persistent = inner.persistent
        self.down = False
        self.lose_receipts = False
        self.sent: list[str] = []

    def transact(self, call: Any, *, sender: str | None = None, gas: int | None = None) -> Any:
        if self.down:
            raise ChainError("connection refused (simulated outage)")
        receipt = self.inner.transact(call, sender=sender, gas=gas)
        self.sent.append(Web3.to_hex(receipt["transactionHash"]))
        if self.lose_receipts:
            raise ChainError("receipt lost (simulated crash after sending)")
        return receipt


@pytest.fixture
def flaky(audit_chain: AuditChain) -> FlakyBackend:
    return FlakyBackend(audit_chain.backend)
