"""Tampering with the trail, on the embedded chain with a real deployment: `verify` finds it.

Altering any stored record, deleting an on-chain submission, adding one, or swapping two is
reported as the first mismatch, at the right sequence number. On-chain deletions and swaps are
simulated by re-logging the stored hashes, changed, on a freshly deployed DecisionLog; an entry
overwritten on the node, by rolling the chain back (`evm_revert`) and logging another hash.
"""

from __future__ import annotations

import json

import pytest

from agent.audit.log_events import read_onchain_hashes
from agent.audit.outbox import read_decisions
from agent.audit.record import chain_head
from agent.audit.trail import AuditTrail
from agent.audit.verify import verify
from agent.store import Store
from tests.integration.audit.conftest import AuditChain, fill

N = 40


@pytest.fixture
def logged(audit_chain: AuditChain, store: Store) -> list[str]:
    """A trail of N decisions logged on the deployment's DecisionLog; returns their hashes."""
    trail = AuditTrail.on_chain(store, audit_chain.backend, audit_chain.log_address, batch_size=16)
    fill(trail, N)
    report = trail.flush()
    assert report is not None and report.pending == 0
    return [d.hash for d in read_decisions(store)]


def _tamper_field(store: Store, seq: int, *, rehash: bool = False) -> None:
    """Change one field of a stored record in SQLite, as an attacker with the database would."""
    (text,) = store.db.execute("SELECT record FROM decisions WHERE seq = ?", [seq]).fetchone()
    data = json.loads(text)
    data["trade"]["gas_used"] += 1
    new = json.dumps(data, sort_keys=True, separators=(",", ":"))
    store.db.execute("UPDATE decisions SET record = ? WHERE seq = ?", [new, seq])
    if rehash:
        from agent.audit.record import decision_hash, record_from_json

        new_hash = decision_hash(record_from_json(new))
        store.db.execute("UPDATE decisions SET hash = ? WHERE seq = ?", [new_hash, seq])


def test_an_intact_trail_verifies(audit_chain: AuditChain, store: Store, logged: list[str]) -> None:
    report = verify(store, audit_chain.backend, audit_chain.log_address, page_blocks=1)
    assert report.ok, report.mismatch
    assert (report.stored, report.onchain, report.verified) == (N, N, N)
    assert report.head_onchain == report.head_recomputed == chain_head(logged)


def test_altering_any_single_stored_record_is_found_at_its_seq(
    audit_chain: AuditChain, store: Store, logged: list[str]
) -> None:
    for seq in range(N):
        original = store.db.execute(
            "SELECT record, hash FROM decisions WHERE seq = ?", [seq]
        ).fetchone()
        _tamper_field(store, seq, rehash=seq % 2 == 1)
        report = verify(store, audit_chain.backend, audit_chain.log_address)
        assert report.mismatch is not None, seq
        assert (report.mismatch.seq, report.mismatch.kind) == (seq, "altered_record")
        assert report.verified == seq
        store.db.execute(
            "UPDATE decisions SET record = ?, hash = ? WHERE seq = ?", [*original, seq]
        )
    assert verify(store, audit_chain.backend, audit_chain.log_address).ok


@pytest.mark.parametrize("omitted", [0, 17, N - 1])
def test_deleting_one_onchain_submission_is_found_at_its_seq(
    audit_chain: AuditChain, store: Store, logged: list[str], omitted: int
) -> None:
    address = audit_chain.fresh_log()
    audit_chain.record_hashes(address, logged[:omitted] + logged[omitted + 1 :])
    report = verify(store, audit_chain.backend, address)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (omitted, "missing_entry")


@pytest.mark.parametrize("position", [0, 23, N])
def test_an_extra_onchain_entry_is_found_at_its_seq(
    audit_chain: AuditChain, store: Store, logged: list[str], position: int
) -> None:
    address = audit_chain.fresh_log()
    forged = "0x" + "5a" * 32
    audit_chain.record_hashes(address, [*logged[:position], forged, *logged[position:]])
    report = verify(store, audit_chain.backend, address)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (position, "extra_entry")


def test_an_entry_logged_after_the_trail_is_an_extra_entry(
    audit_chain: AuditChain, store: Store, logged: list[str]
) -> None:
    audit_chain.record_hashes(audit_chain.log_address, [logged[-1]])  # a duplicate resend
    report = verify(store, audit_chain.backend, audit_chain.log_address)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (N, "extra_entry")


@pytest.mark.parametrize(("a", "b"), [(3, 4), (5, 31)])
def test_swapping_two_onchain_entries_is_found_at_the_first(
    audit_chain: AuditChain, store: Store, logged: list[str], a: int, b: int
) -> None:
    swapped = list(logged)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    address = audit_chain.fresh_log()
    audit_chain.record_hashes(address, swapped)
    assert read_onchain_hashes(audit_chain.backend, address)[0] == swapped
    report = verify(store, audit_chain.backend, address)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (a, "reordered")


def test_swapping_two_stored_records_is_found_at_the_first(
    audit_chain: AuditChain, store: Store, logged: list[str]
) -> None:
    rows = {
        seq: (record, h)
        for seq, record, h in store.db.execute(
            "SELECT seq, record, hash FROM decisions WHERE seq IN (9, 26)"
        ).fetchall()
    }
    with store.transaction() as conn:
        for seq, other in ((9, 26), (26, 9)):
            conn.execute(
                "UPDATE decisions SET record = ?, hash = ? WHERE seq = ?", [*rows[other], seq]
            )
    report = verify(store, audit_chain.backend, audit_chain.log_address)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (9, "reordered")


def test_deleting_a_stored_record_is_found_at_its_seq(
    audit_chain: AuditChain, store: Store, logged: list[str]
) -> None:
    store.db.execute("DELETE FROM decisions WHERE seq = 12")
    report = verify(store, audit_chain.backend, audit_chain.log_address)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (12, "missing_record")


@pytest.mark.parametrize("seq", [7, N - 1])
def test_an_entry_overwritten_on_the_node_blames_the_chain_not_the_store(
    audit_chain: AuditChain, store: Store, seq: int
) -> None:
    """The node's chain is rolled back to before entry `seq` and written again with another
    hash there: the store's records are intact, so the kind blames the chain."""
    w3 = audit_chain.backend.w3
    trail = AuditTrail.on_chain(store, audit_chain.backend, audit_chain.log_address, batch_size=16)
    fill(trail, seq)
    trail.flush()
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    fill(trail, N - seq, start=seq)
    report = trail.flush()
    assert report is not None and report.pending == 0
    logged = [d.hash for d in read_decisions(store)]
    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    audit_chain.record_hashes(audit_chain.log_address, ["0x" + "5a" * 32, *logged[seq + 1 :]])

    report = verify(store, audit_chain.backend, audit_chain.log_address)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (seq, "chain_altered")
    assert report.verified == seq
    detail = report.mismatch.detail
    assert f"the DecisionLog's entry at seq {seq}" in detail and "whose hash is intact" in detail
    if seq < N - 1:  # the log's own next entry vouches for the stored record
        assert f"the log's own entry {seq + 1} is the hash of decision {seq + 1}" in detail
    else:  # the last one: the store knows which transaction logged it, and it is not this one
        assert "the store recorded it as logged by transaction 0x" in detail
