"""The pure comparison behind `audit verify`: each kind of tampering found at the right seq."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agent.audit.outbox import StoredDecision
from agent.audit.record import (
    ZERO_HASH,
    DecisionRecord,
    canonical_json,
    chain_head,
    decision_hash,
)
from agent.audit.verify import find_first_mismatch
from tests.unit.audit.conftest import sample_fields

N = 12


def _trail(n: int = N) -> list[DecisionRecord]:
    records: list[DecisionRecord] = []
    prev = ZERO_HASH
    for i in range(n):
        record = sample_fields(i).to_record(i, prev)
        records.append(record)
        prev = decision_hash(record)
    return records


def _rows(records: list[DecisionRecord]) -> list[StoredDecision]:
    return [
        StoredDecision(r.seq, decision_hash(r), canonical_json(r), "confirmed", None, None, 1, None)
        for r in records
    ]


def _hashes(records: list[DecisionRecord]) -> list[str]:
    return [decision_hash(r) for r in records]


def _altered(row: StoredDecision, *, keep_hash: bool = True) -> StoredDecision:
    data = json.loads(row.record_json)
    data["target_exposure_e9"] = (data["target_exposure_e9"] + 1) % 10**9
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    new_hash = row.hash if keep_hash else decision_hash(DecisionRecord.from_json_data(data))
    return dataclasses.replace(row, record_json=text, hash=new_hash)


def test_an_intact_trail_has_no_mismatch() -> None:
    records = _trail()
    hashes = _hashes(records)
    mismatch, recomputed = find_first_mismatch(_rows(records), hashes, chain_head(hashes))
    assert mismatch is None and recomputed == hashes


@pytest.mark.parametrize("seq", [0, 5, N - 1])
@pytest.mark.parametrize("keep_hash", [True, False])
def test_an_altered_record_is_found_at_its_seq(seq: int, keep_hash: bool) -> None:
    records = _trail()
    rows = _rows(records)
    rows[seq] = _altered(rows[seq], keep_hash=keep_hash)
    hashes = _hashes(records)
    mismatch, _ = find_first_mismatch(rows, hashes, chain_head(hashes))
    assert mismatch is not None
    assert (mismatch.seq, mismatch.kind) == (seq, "altered_record")


def test_a_record_that_no_longer_parses_is_altered() -> None:
    records = _trail()
    rows = _rows(records)
    rows[3] = dataclasses.replace(rows[3], record_json="{garbage")
    mismatch, _ = find_first_mismatch(rows, _hashes(records))
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (3, "altered_record")


@pytest.mark.parametrize("seq", [0, 6, N - 1])
def test_a_missing_onchain_entry_is_found_at_its_seq(seq: int) -> None:
    records = _trail()
    hashes = _hashes(records)
    onchain = hashes[:seq] + hashes[seq + 1 :]
    mismatch, _ = find_first_mismatch(_rows(records), onchain, chain_head(onchain))
    assert mismatch is not None
    assert (mismatch.seq, mismatch.kind) == (seq, "missing_entry")


@pytest.mark.parametrize("seq", [0, 6, N])
@pytest.mark.parametrize("duplicate", [False, True])
def test_an_extra_onchain_entry_is_found_at_its_seq(seq: int, duplicate: bool) -> None:
    records = _trail()
    hashes = _hashes(records)
    # a duplicate of the entry before (the crash-and-resend case) or, at 0, of a later one
    extra = (hashes[seq - 1] if seq else hashes[3]) if duplicate else "0x" + "ee" * 32
    onchain = [*hashes[:seq], extra, *hashes[seq:]]
    mismatch, _ = find_first_mismatch(_rows(records), onchain, chain_head(onchain))
    assert mismatch is not None
    assert (mismatch.seq, mismatch.kind) == (seq, "extra_entry")


@pytest.mark.parametrize(("a", "b"), [(0, 1), (2, 9), (N - 2, N - 1)])
def test_two_swapped_onchain_entries_are_found_at_the_first(a: int, b: int) -> None:
    records = _trail()
    hashes = _hashes(records)
    onchain = list(hashes)
    onchain[a], onchain[b] = onchain[b], onchain[a]
    mismatch, _ = find_first_mismatch(_rows(records), onchain, chain_head(onchain))
    assert mismatch is not None
    assert (mismatch.seq, mismatch.kind) == (a, "reordered")


@pytest.mark.parametrize(("a", "b"), [(0, 1), (4, 8)])
def test_two_swapped_stored_rows_are_found_at_the_first(a: int, b: int) -> None:
    records = _trail()
    rows = _rows(records)
    ra, rb = rows[a], rows[b]
    rows[a] = dataclasses.replace(ra, record_json=rb.record_json, hash=rb.hash)
    rows[b] = dataclasses.replace(rb, record_json=ra.record_json, hash=ra.hash)
    mismatch, _ = find_first_mismatch(rows, _hashes(records))
    assert mismatch is not None
    assert (mismatch.seq, mismatch.kind) == (a, "reordered")


def test_a_deleted_stored_row_is_a_missing_record() -> None:
    records = _trail()
    rows = _rows(records)
    del rows[4]
    mismatch, _ = find_first_mismatch(rows, _hashes(records))
    assert mismatch is not None
    assert (mismatch.seq, mismatch.kind) == (4, "missing_record")


def test_a_rewritten_chain_of_records_still_breaks_the_link() -> None:
    """Rewriting record 5 with a consistent stored hash but not re-linking 6 is caught at 5
    on-chain; without a chain (nothing logged yet) the link at 6 still gives it away."""
    records = _trail()
    rows = _rows(records)
    rows[5] = _altered(rows[5], keep_hash=False)
    mismatch, _ = find_first_mismatch(rows, _hashes(records))
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (5, "altered_record")
    pending = [dataclasses.replace(r, status="pending") for r in rows]
    mismatch, _ = find_first_mismatch(pending, [])
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (6, "broken_link")
    forged_log = [*_hashes(records)[:5], rows[5].hash, rows[6].hash]  # a rewritten log, too
    mismatch, _ = find_first_mismatch(rows[:7], forged_log)
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (6, "broken_link")


def test_unsent_decisions_at_the_end_are_waiting_not_missing() -> None:
    """A running service's newest decisions wait in the outbox: not a tamper alarm."""
    records = _trail()
    rows = _rows(records)
    rows[-2:] = [dataclasses.replace(r, status="pending") for r in rows[-2:]]
    hashes = _hashes(records)[:-2]
    mismatch, _ = find_first_mismatch(rows, hashes, chain_head(hashes))
    assert mismatch is None


def test_decisions_confirmed_but_missing_from_the_log_are_missing_entries() -> None:
    records = _trail()
    rows = _rows(records)
    rows[-2] = dataclasses.replace(rows[-2], status="pending")  # the last one says confirmed
    hashes = _hashes(records)[:-2]
    mismatch, _ = find_first_mismatch(rows, hashes, chain_head(hashes))
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (N - 1, "missing_entry")
    assert "the store has it as confirmed" in mismatch.detail


def test_a_wrong_head_is_reported_when_every_entry_matches() -> None:
    records = _trail()
    hashes = _hashes(records)
    mismatch, _ = find_first_mismatch(_rows(records), hashes, "0x" + "01" * 32)
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (N - 1, "head_mismatch")


@pytest.mark.parametrize("seq", [0, 5, N - 2])
def test_an_entry_overwritten_on_chain_is_blamed_on_the_chain(seq: int) -> None:
    """The store's records are intact and the log's own next entry commits to this record's
    hash (as the next record's prev_hash): the chain's entry is the one that changed."""
    records = _trail()
    onchain = _hashes(records)
    onchain[seq] = "0x" + "ee" * 32
    mismatch, _ = find_first_mismatch(_rows(records), onchain, chain_head(onchain))
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (seq, "chain_altered")
    assert "whose hash is intact" in mismatch.detail


def test_the_last_entry_is_blamed_on_the_chain_only_with_the_transaction_that_logged_it() -> None:
    records = _trail()
    onchain = _hashes(records)
    onchain[-1] = "0x" + "ee" * 32
    rows = _rows(records)
    # nothing after it, no transaction recorded: either side may have changed
    mismatch, _ = find_first_mismatch(rows, onchain)
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (N - 1, "altered_record")
    # the store recorded the transaction that logged it; the node's entry is from another one
    logged_by = ["0x" + f"{i:064x}" for i in range(N)]
    rows = [dataclasses.replace(r, tx_hash=logged_by[r.seq]) for r in rows]
    other = [*logged_by[:-1], "0x" + "ab" * 32]
    mismatch, _ = find_first_mismatch(rows, onchain, onchain_txs=other)
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (N - 1, "chain_altered")
    assert f"logged by transaction {logged_by[-1]}" in mismatch.detail
    # the same transaction: the store's record was rewritten, hash and all
    rows[-1] = _altered(rows[-1], keep_hash=False)
    mismatch, _ = find_first_mismatch(rows, _hashes(records), onchain_txs=logged_by)
    assert mismatch is not None and (mismatch.seq, mismatch.kind) == (N - 1, "altered_record")
