"""Verification reads the DecisionLog's events: paging, checkpoints, pruned logs, bare records.

`verify_records` checks any list of DecisionRecord objects (e.g. an `--onchain` backtest's)
against a DecisionLog; the log's hashes come from its DecisionsRecorded events, read a block
range at a time, and must reproduce its stored count, head and checkpoints.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest
from eth_utils import keccak

from agent.audit.log_events import read_decision_log, read_onchain_hashes
from agent.audit.outbox import read_decisions
from agent.audit.record import DecisionRecord, chain_head, decision_hash
from agent.audit.trail import AuditTrail
from agent.audit.verify import verify, verify_records
from agent.errors import AuditError
from agent.store import Store
from tests.integration.audit.conftest import AuditChain, fill

N = 30


@pytest.fixture
def records(audit_chain: AuditChain, store: Store) -> list[DecisionRecord]:
    """N decisions logged on the deployment's DecisionLog in batches of 7; their records."""
    trail = AuditTrail.on_chain(store, audit_chain.backend, audit_chain.log_address, batch_size=7)
    fill(trail, N)
    report = trail.flush()
    assert report is not None and report.pending == 0
    return [row.record() for row in read_decisions(store)]


def _hash(n: int) -> str:
    return "0x" + keccak(n.to_bytes(32, "big")).hex()


def test_records_handed_in_verify_against_the_log(
    audit_chain: AuditChain, records: list[DecisionRecord]
) -> None:
    report = verify_records(audit_chain.backend, audit_chain.log_address, records)
    assert report.ok, report.mismatch
    assert (report.stored, report.onchain, report.verified) == (N, N, N)
    assert report.head_recomputed == report.head_onchain


def test_an_altered_record_handed_in_is_found_at_its_seq(
    audit_chain: AuditChain, records: list[DecisionRecord]
) -> None:
    altered = list(records)
    altered[11] = dataclasses.replace(records[11], target_exposure_e9=1)
    report = verify_records(audit_chain.backend, audit_chain.log_address, altered)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind, report.verified) == (
        11,
        "altered_record",
        11,
    )


@pytest.mark.parametrize(
    ("change", "seq", "kind"),
    [
        (lambda r: r[:9] + r[10:], 9, "missing_record"),
        (lambda r: [*r[:4], r[5], r[4], *r[6:]], 4, "reordered"),
        (lambda r: r[:-3], N - 3, "extra_entry"),
    ],
)
def test_records_handed_in_that_differ_from_the_log_are_reported(
    audit_chain: AuditChain, records: list[DecisionRecord], change: object, seq: int, kind: str
) -> None:
    changed = change(records)  # type: ignore[operator]
    report = verify_records(audit_chain.backend, audit_chain.log_address, changed)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (seq, kind)


def test_records_the_log_lacks_are_missing_entries(
    audit_chain: AuditChain, records: list[DecisionRecord]
) -> None:
    fresh = audit_chain.fresh_log()
    audit_chain.record_hashes(fresh, [decision_hash(r) for r in records[:20]])
    report = verify_records(audit_chain.backend, fresh, records)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (20, "missing_entry")
    assert report.mismatch.detail == "the DecisionLog has no entry 20"


def test_the_events_are_read_a_page_of_blocks_at_a_time(
    audit_chain: AuditChain,
    store: Store,
    records: list[DecisionRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events_module = sys.modules["agent.audit.log_events"]
    pages: list[str] = []
    read_chain = events_module.read_chain

    def counting(what: str, *args: object, **kwargs: object) -> object:
        if "DecisionsRecorded events" in what:
            pages.append(what)
        return read_chain(what, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(events_module, "read_chain", counting)
    tiny = verify(store, audit_chain.backend, audit_chain.log_address, page_blocks=2)
    tiny_pages = len(pages)
    pages.clear()
    whole = verify(store, audit_chain.backend, audit_chain.log_address)
    assert tiny.ok and whole.ok and tiny == whole
    latest = audit_chain.backend.w3.eth.block_number
    assert len(pages) == 1 and tiny_pages == latest // 2 + 1 > 5


def test_2500_entries_reassemble_from_events_and_match_the_checkpoints(
    audit_chain: AuditChain,
) -> None:
    address = audit_chain.fresh_log()
    hashes = [_hash(n) for n in range(2_500)]
    audit_chain.record_hashes(address, hashes)
    log = read_decision_log(audit_chain.backend, address, page_blocks=3)
    assert log.inconsistency is None
    assert (log.count, log.head, log.hashes) == (2_500, chain_head(hashes), hashes)


def test_a_node_without_the_early_logs_is_reported_not_trusted(
    audit_chain: AuditChain, store: Store, records: list[DecisionRecord]
) -> None:
    """Scanning from after the first batch (as on a node that pruned old logs) misses seq 0..6."""
    first_batch_block = read_decisions(store)[0].block_number
    assert first_batch_block is not None
    from_block = first_batch_block + 1
    report = verify(store, audit_chain.backend, audit_chain.log_address, from_block=from_block)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (0, "log_inconsistent")
    assert "pruned" in report.mismatch.detail
    with pytest.raises(AuditError, match="inconsistent at seq 0"):
        read_onchain_hashes(audit_chain.backend, audit_chain.log_address, from_block=from_block)


def test_a_mismatch_before_the_missing_logs_is_reported_first(
    audit_chain: AuditChain, records: list[DecisionRecord]
) -> None:
    address = audit_chain.fresh_log()
    audit_chain.record_hashes(address, [decision_hash(r) for r in records[:10]])
    first_block = audit_chain.backend.w3.eth.block_number
    audit_chain.record_hashes(address, [decision_hash(r) for r in records[10:]])
    altered = list(records)
    altered[3] = dataclasses.replace(records[3], target_exposure_e9=1)
    # Events from the second transaction only: entries 0..9 are not in any event read.
    report = verify_records(audit_chain.backend, address, altered, from_block=first_block + 1)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (0, "log_inconsistent")
    report = verify_records(audit_chain.backend, address, altered)
    assert report.mismatch is not None
    assert (report.mismatch.seq, report.mismatch.kind) == (3, "altered_record")
