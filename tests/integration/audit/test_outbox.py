"""The outbox on real chains: batching, outages, lost receipts, diverged logs, anvil restarts.

Whatever happens to the chain, every stored decision ends up on the DecisionLog exactly once,
in order: checked through the log's entries, its DecisionsRecorded events and `verify`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.audit.log_events import read_onchain_hashes
from agent.audit.outbox import DecisionOutbox, read_decisions
from agent.audit.record import chain_head
from agent.audit.trail import AuditTrail, locate_decision_log
from agent.audit.verify import verify
from agent.chain.backends import AnvilBackend, ChainBackend
from agent.chain.deploy import deploy_all
from agent.config import Settings
from agent.errors import AuditError, ChainError
from agent.store import Store
from tests.integration.audit.conftest import AuditChain, FlakyBackend, fill


def _logged_seqs(backend: ChainBackend, address: str) -> list[int]:
    """Sequence numbers of every entry of the log's DecisionsRecorded events, in chain order."""
    from agent.audit.outbox import decision_log_contract

    log = decision_log_contract(backend, address)
    events = log.events.DecisionsRecorded.get_logs(from_block=0, to_block="latest")
    return [
        int(e["args"]["firstSeq"]) + i
        for e in events
        for i in range(len(e["args"]["decisionHashes"]))
    ]


def _assert_exactly_once(store: Store, backend: ChainBackend, address: str, n: int) -> None:
    stored = [d.hash for d in read_decisions(store)]
    onchain, head = read_onchain_hashes(backend, address)
    assert len(stored) == n
    assert onchain == stored
    assert head == chain_head(stored)
    assert _logged_seqs(backend, address) == list(range(n))
    assert {d.status for d in read_decisions(store)} == {"confirmed"}
    assert verify(store, backend, address).ok


def test_250_decisions_in_batches_of_100_take_3_transactions(
    audit_chain: AuditChain, store: Store, flaky: FlakyBackend
) -> None:
    trail = AuditTrail.on_chain(store, flaky, audit_chain.log_address, batch_size=100)
    fill(trail, 250)
    assert trail.last_flush is not None and trail.last_flush.onchain == 200
    report = trail.flush()
    assert report is not None and (report.sent, report.transactions) == (50, 1)
    assert len(flaky.sent) == 3
    assert audit_chain.log().functions.count().call() == 250
    assert len({d.tx_hash for d in read_decisions(store)}) == 3
    _assert_exactly_once(store, audit_chain.backend, audit_chain.log_address, 250)


def test_batch_size_1_sends_one_record_transaction_per_decision(
    audit_chain: AuditChain, store: Store, flaky: FlakyBackend
) -> None:
    trail = AuditTrail.on_chain(store, flaky, audit_chain.log_address, batch_size=1)
    fill(trail, 6)
    assert len(flaky.sent) == 6 and trail.unconfirmed == 0
    rows = read_decisions(store)
    assert [r.attempts for r in rows] == [1] * 6
    assert len({r.tx_hash for r in rows}) == 6 and all(r.block_number for r in rows)
    _assert_exactly_once(store, audit_chain.backend, audit_chain.log_address, 6)


def test_a_chain_outage_loses_and_duplicates_nothing(
    audit_chain: AuditChain, store: Store, flaky: FlakyBackend
) -> None:
    waits: list[float] = []
    trail = AuditTrail.on_chain(
        store, flaky, audit_chain.log_address, batch_size=10, backoff_s=0.25, sleep=waits.append
    )
    fill(trail, 20)
    flaky.down = True
    fill(trail, 35, start=20)  # the trail keeps going; decisions wait in the store
    assert trail.unconfirmed == 35
    assert audit_chain.log().functions.count().call() == 20
    with pytest.raises(ChainError, match="35 decision"):
        trail.flush(max_attempts=3)
    assert waits == [0.25, 0.5]
    statuses = [d.status for d in read_decisions(store)]
    assert statuses == ["confirmed"] * 20 + ["sent"] * 10 + ["pending"] * 25
    flaky.down = False
    report = trail.flush()
    assert report is not None and (report.sent, report.pending) == (35, 0)
    assert max(d.attempts for d in read_decisions(store)) > 1
    _assert_exactly_once(store, audit_chain.backend, audit_chain.log_address, 55)


def test_a_receipt_lost_after_sending_is_not_resent(
    audit_chain: AuditChain, store: Store, flaky: FlakyBackend
) -> None:
    trail = AuditTrail.on_chain(store, flaky, audit_chain.log_address, batch_size=10)
    flaky.lose_receipts = True
    fill(trail, 10)  # mined, but the outbox never saw the receipt
    assert trail.last_flush is not None and trail.last_flush.error is not None
    assert {d.status for d in read_decisions(store)} == {"sent"}
    flaky.lose_receipts = False
    report = trail.flush()
    assert report is not None and (report.sent, report.transactions) == (0, 0)
    assert len(flaky.sent) == 1
    _assert_exactly_once(store, audit_chain.backend, audit_chain.log_address, 10)


def test_a_fresh_log_gets_the_whole_trail_replayed(audit_chain: AuditChain, store: Store) -> None:
    trail = AuditTrail.on_chain(store, audit_chain.backend, audit_chain.log_address)
    fill(trail, 30)
    trail.flush()
    fresh = audit_chain.fresh_log()
    report = DecisionOutbox(store, audit_chain.backend, fresh, batch_size=8).flush()
    assert (report.sent, report.transactions, report.onchain) == (30, 4, 30)
    _assert_exactly_once(store, audit_chain.backend, fresh, 30)


def test_a_log_that_diverged_from_the_store_is_never_appended_to(
    audit_chain: AuditChain, store: Store
) -> None:
    trail = AuditTrail(store)  # off-chain for now
    fill(trail, 5)
    audit_chain.record_hashes(audit_chain.log_address, ["0x" + "77" * 32])
    outbox = DecisionOutbox(store, audit_chain.backend, audit_chain.log_address)
    with pytest.raises(AuditError, match="diverged"):
        outbox.flush()
    audit_chain.record_hashes(audit_chain.log_address, ["0x" + "77" * 32] * 5)
    with pytest.raises(AuditError, match="extra entry at seq 5"):
        outbox.flush()
    assert audit_chain.log().functions.count().call() == 6


def test_an_operator_without_writer_role_is_refused(audit_chain: AuditChain, store: Store) -> None:
    from agent.chain.contracts import load_artifact

    artifact = load_artifact("DecisionLog")
    other_admin = audit_chain.backend.accounts[1]
    address = audit_chain.backend.deploy(artifact.abi, artifact.bytecode, other_admin)
    fill(AuditTrail(store), 2)
    with pytest.raises(AuditError, match="WRITER_ROLE"):
        DecisionOutbox(store, audit_chain.backend, address).flush()


def test_an_invalid_batch_size_is_refused(audit_chain: AuditChain, store: Store) -> None:
    with pytest.raises(AuditError, match="batch_size"):
        DecisionOutbox(store, audit_chain.backend, audit_chain.log_address, batch_size=0)


def test_anvil_stopped_for_a_stretch_then_restarted_from_its_state_file(tmp_path: Path) -> None:
    """The real thing: the node goes down mid-run and comes back with its state file; later
    the whole service restarts on a new node loaded from the same state."""
    state = tmp_path / "anvil-state.json"
    backend = AnvilBackend(state_path=state)
    try:
        with Store(tmp_path / "agora.db") as store:
            settings = Settings()
            deployment = deploy_all(backend, store, settings)
            address = deployment.decision_log
            trail = AuditTrail.on_chain(
                store, backend, address, batch_size=5, backoff_s=0.0, max_attempts=2
            )
            fill(trail, 12)
            assert trail.unconfirmed == 2
            backend.stop()  # SIGTERM: anvil writes its state file
            assert not backend.reachable()
            fill(trail, 13, start=12)
            assert trail.unconfirmed == 15
            with pytest.raises(ChainError):
                trail.flush()
            stopped = backend.process
            backend.process = backend._start(30.0)  # same port, state loaded from the file
            if stopped.stderr is not None:
                stopped.stderr.close()
            report = trail.flush()
            assert report is not None and (report.sent, report.onchain) == (15, 25)
            _assert_exactly_once(store, backend, address, 25)
        backend.close()

        # A restarted service: a new node from the state file, the same store.
        backend = AnvilBackend(state_path=state)
        with Store(tmp_path / "agora.db") as store:
            location = locate_decision_log(backend, store, settings)
            assert (location.address, location.replayed) == (address, 0)
            trail = AuditTrail.on_chain(store, backend, address, batch_size=5)
            fill(trail, 7, start=25)
            trail.flush()
            assert verify(store, backend, address).ok
            onchain, _ = read_onchain_hashes(backend, address)
            assert onchain == [d.hash for d in read_decisions(store)] and len(onchain) == 32
    finally:
        backend.close()


def test_a_persistent_chain_without_a_recorded_log_is_reported(
    audit_chain: AuditChain, tmp_path: Path
) -> None:
    persistent = FlakyBackend(audit_chain.backend)
    persistent.persistent = True
    with Store(tmp_path / "empty.db") as store, pytest.raises(AuditError, match="no DecisionLog"):
        locate_decision_log(persistent, store, Settings())


def test_prove_gives_the_logging_transaction_even_when_the_receipt_was_lost(
    audit_chain: AuditChain, store: Store, flaky: FlakyBackend
) -> None:
    from agent.audit.verify import prove

    trail = AuditTrail.on_chain(store, flaky, audit_chain.log_address, batch_size=4)
    flaky.lose_receipts = True
    fill(trail, 4)
    flaky.lose_receipts = False
    trail.flush()
    proof = prove(store, audit_chain.backend, audit_chain.log_address, 2)
    assert proof.matches and proof.tx_hash == flaky.sent[0]
    assert proof.head_after == chain_head([d.hash for d in read_decisions(store)][:3])
    with pytest.raises(AuditError, match="no decision 9"):
        prove(store, audit_chain.backend, audit_chain.log_address, 9)
