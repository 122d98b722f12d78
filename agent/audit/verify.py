"""Verify the decision trail: every record against its hash, its predecessor and the chain.

The DecisionLog keeps only `count`, `head` and a checkpoint of the head every 1,000 entries in
storage; the hashes themselves are in its `DecisionsRecorded` events (one per transaction:
first seq, head before and after, the hashes). `read_decision_log` reads those events with
eth_getLogs, a block range at a time, reassembles the hashes in seq order and checks that they
reproduce the contract's stored head and checkpoints. `verify_records` then recomputes each
record's hash, checks the `prev_hash` links, compares hash by hash with the events and compares
the on-chain head with the head of the recomputed hashes; `verify` does the same for the
records in the store, also checking each against the hash stored beside it. Decisions at the
end of the store that the outbox has not sent yet (status pending or sent, past the log's
count: a service that is running) are checked against their hashes and links but are not a
mismatch: they are reported as `waiting`. Both report the FIRST mismatch, by sequence number,
and what it looks like:

    missing_record    there is no decision at this seq (a gap in the table or the list)
    altered_record    the record no longer hashes to what was stored / logged
    chain_altered     the chain's entry differs from a record that is intact, and the evidence
                      says the entry changed: the log's own next entry commits to this record's
                      hash (as the next record's prev_hash), or the store recorded another
                      transaction than the node's as the one that logged it
    broken_link       the record's prev_hash is not the hash of the record before it
    reordered         the decision at this seq is another seq's (store or chain order changed)
    missing_entry     the chain lacks this decision (later entries shifted, or never sent)
    extra_entry       the chain holds an entry the records do not
    head_mismatch     every entry matches but the log's head does not (not a DecisionLog?)
    log_inconsistent  the log's events do not reproduce its own storage: an entry no event
                      carries (the node pruned old logs, or the scan started too late), an entry
                      two events carry, an event that does not chain onto the one before it, or
                      a head / checkpoint / count the events do not give

`find_first_mismatch` is the pure comparison, for tests and other callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from web3 import Web3

from agent.audit.log_events import (
    PAGE_BLOCKS,
    LoggedBatch,
    Mismatch,
    _hex,
    iter_batches,
    read_decision_log,
)
from agent.audit.outbox import (
    decision_log_contract,
    iter_decisions,
    read_chain,
    read_decision,
)
from agent.audit.record import (
    ZERO_HASH,
    DecisionRecord,
    chain_head,
    decision_hash,
    decision_hashes,
)
from agent.chain.backends import ChainBackend
from agent.errors import AuditError
from agent.store import Store

GIVEN = "given"
"""The status of a record handed to `verify_records` (it has no outbox status)."""


class TrailEntry(Protocol):
    """One decision to verify: a stored row (`StoredDecision`) or a record handed in."""

    @property
    def seq(self) -> int:
        """The position it claims (the store's primary key; the record's own seq)."""
        ...

    @property
    def hash(self) -> str:
        """The hash stored with it (for a record handed in: its own hash)."""
        ...

    @property
    def status(self) -> str:
        """The outbox status, or GIVEN."""
        ...

    @property
    def tx_hash(self) -> str | None:
        """The transaction the store recorded as logging it, if any."""
        ...

    def record(self) -> DecisionRecord:
        """Return the record (raises AuditError if it does not parse)."""
        ...


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `verify` / `verify_records`.

    Attributes:
        decision_log: the DecisionLog's address.
        stored: decisions checked (in the store, or handed in).
        onchain: entries in the DecisionLog (its `count()`).
        verified: decisions that matched before the first mismatch (all of them if ok).
        head_onchain: the DecisionLog's head.
        head_recomputed: the running head of the hashes recomputed from the records.
        mismatch: the first mismatch, or None.
        waiting: the newest stored decisions the outbox has not sent yet (past the log's
            count, not confirmed): a running service's, checked against the store only.
    """

    decision_log: str
    stored: int
    onchain: int
    verified: int
    head_onchain: str
    head_recomputed: str
    mismatch: Mismatch | None
    waiting: int = 0

    @property
    def ok(self) -> bool:
        """Whether the whole trail verified."""
        return self.mismatch is None

    def to_json_data(self) -> dict[str, Any]:
        """Return the report as JSON data."""
        data = asdict(self)
        data["ok"] = self.ok
        return data


@dataclass(frozen=True)
class DecisionProof:
    """One stored decision with the on-chain evidence that it was logged.

    Attributes:
        seq: the sequence number.
        record: the stored record (None if it no longer parses).
        stored_hash: the hash stored with it.
        recomputed_hash: the hash recomputed from the record (None if it does not parse).
        status: the outbox status (pending, sent, confirmed).
        onchain_hash: the hash the DecisionLog's event carries at `seq` (None if the log is
            shorter or no event carrying it was found).
        tx_hash: the transaction whose DecisionsRecorded event logged it (None if not found).
        block_number: that transaction's block.
        head_after: the log's head right after this entry (from the event's head before it and
            its hashes up to this one).
        head: the DecisionLog's current head.
        onchain_count: the DecisionLog's current count.
        decision_log: the DecisionLog's address.
    """

    seq: int
    record: DecisionRecord | None
    stored_hash: str
    recomputed_hash: str | None
    status: str
    onchain_hash: str | None
    tx_hash: str | None
    block_number: int | None
    head_after: str | None
    head: str
    onchain_count: int
    decision_log: str

    @property
    def matches(self) -> bool:
        """Whether the record hashes to the stored hash and to the on-chain entry."""
        return self.recomputed_hash is not None and (
            self.recomputed_hash == self.stored_hash == self.onchain_hash
        )

    def to_json_data(self) -> dict[str, Any]:
        """Return the proof as JSON data (the record in its JSON form)."""
        data = asdict(self)
        data["record"] = None if self.record is None else self.record.to_json_data()
        data["matches"] = self.matches
        return data


def describe_report(report: VerifyReport, chain_key: str) -> list[str]:
    """Return the verdict as `agora audit verify` prints it (and the dashboard shows it)."""
    if report.ok:
        waiting = (
            f"; {report.waiting} newer decisions are waiting in the outbox (not sent yet, "
            "checked against the store only)"
            if report.waiting
            else ""
        )
        return [
            f"OK: {report.verified} decisions verified: each record hashes to its entry in the "
            f"DecisionLog {report.decision_log} on {chain_key}; "
            f"head {report.head_onchain}{waiting}"
        ]
    mismatch = report.mismatch
    assert mismatch is not None
    return [
        f"MISMATCH at seq {mismatch.seq} ({mismatch.kind}): {mismatch.detail}",
        f"{report.verified} of {report.stored} stored decisions verified before it; the "
        f"DecisionLog {report.decision_log} holds {report.onchain} entries",
    ]


# --- reading the log ------------------------------------------------------------------------


@dataclass(frozen=True)
class _GivenRecord:
    """A record handed to `verify_records`, as a TrailEntry (its stored hash is its own)."""

    given: DecisionRecord
    hash: str
    status: str = GIVEN
    tx_hash: str | None = None

    @property
    def seq(self) -> int:
        return self.given.seq

    def record(self) -> DecisionRecord:
        return self.given


def verify_records(
    backend: ChainBackend,
    log_address: str,
    records: Sequence[DecisionRecord],
    *,
    page_blocks: int = PAGE_BLOCKS,
    from_block: int = 0,
) -> VerifyReport:
    """Check records (seq 0, 1, ... in order) against their links and a DecisionLog's events.

    Recomputes each record's hash, checks that records[i] has seq i and that its prev_hash is the
    hash of records[i - 1], compares the hashes one by one with the entries the log's events
    carry, and the log's head with the running head of the hashes. Returns a report naming the
    first mismatch (None when everything verifies); it does not raise on a mismatch.

    Raises:
        ChainError: the chain cannot be read.
    """
    given = list(records)
    entries = [
        _GivenRecord(record, h) for record, h in zip(given, decision_hashes(given), strict=True)
    ]
    return _verify_entries(
        entries, backend, log_address, page_blocks, from_block, source="the records"
    )


def verify(
    store: Store,
    backend: ChainBackend,
    decision_log_address: str,
    *,
    page_blocks: int = PAGE_BLOCKS,
    from_block: int = 0,
) -> VerifyReport:
    """`verify_records` over the store's decisions, also checking each against its stored hash.

    A stored record that no longer parses, or no longer hashes to the hash stored beside it, is
    reported as altered_record at its seq.

    Raises:
        ChainError: the chain cannot be read.
    """
    rows = list(iter_decisions(store))
    return _verify_entries(
        rows, backend, decision_log_address, page_blocks, from_block, source="the store"
    )


def _verify_entries(
    entries: Sequence[TrailEntry],
    backend: ChainBackend,
    address: str,
    page_blocks: int,
    from_block: int,
    *,
    source: str,
) -> VerifyReport:
    log = read_decision_log(backend, address, page_blocks=page_blocks, from_block=from_block)
    txs = log.entry_txs
    if log.inconsistency is None:
        mismatch, hashes = find_first_mismatch(
            entries, log.hashes, log.head, source=source, onchain_txs=txs
        )
    else:  # compare up to where the events stop making sense; report that if nothing earlier
        cut = log.inconsistency.seq
        mismatch, _ = find_first_mismatch(
            entries[:cut], log.hashes[:cut], source=source, onchain_txs=txs[:cut]
        )
        if mismatch is None or mismatch.seq >= cut:
            mismatch = log.inconsistency
        hashes = _effective_hashes(entries)
    waiting = max(0, len(entries) - log.count) if mismatch is None else 0
    return VerifyReport(
        decision_log=log.address,
        stored=len(entries),
        onchain=log.count,
        verified=len(entries) - waiting if mismatch is None else mismatch.seq,
        head_onchain=log.head,
        head_recomputed=chain_head(hashes[: len(hashes) - waiting]),
        mismatch=mismatch,
        waiting=waiting,
    )


def recompute_hashes(rows: Sequence[TrailEntry]) -> list[str | None]:
    """Return the hash recomputed from each record (None where it does not parse).

    A record handed to `verify_records` was hashed when it was given; it is not hashed again.
    """
    parsed: list[DecisionRecord | None] = []
    for row in rows:
        try:
            parsed.append(None if isinstance(row, _GivenRecord) else row.record())
        except AuditError:
            parsed.append(None)
    fresh = iter(decision_hashes(r for r in parsed if r is not None))
    return [
        row.hash if isinstance(row, _GivenRecord) else None if record is None else next(fresh)
        for row, record in zip(rows, parsed, strict=True)
    ]


def _effective_hashes(rows: Sequence[TrailEntry]) -> list[str]:
    """The recomputed hashes, with the stored hash where a record does not parse."""
    recomputed = recompute_hashes(rows)
    return [h if h is not None else row.hash for h, row in zip(recomputed, rows, strict=True)]


def find_first_mismatch(
    rows: Sequence[TrailEntry],
    onchain: Sequence[str],
    head_onchain: str | None = None,
    *,
    source: str = "the store",
    onchain_txs: Sequence[str] = (),
) -> tuple[Mismatch | None, list[str]]:
    """Compare decisions (in seq order) with on-chain hashes; return the first mismatch.

    Also returns the recomputed hashes of the records (a record that does not parse counts
    with its stored hash, so the head can still be compared). `source` names where the
    decisions come from, in the mismatch's detail; `onchain_txs`, the transaction that logged
    each on-chain hash (when known), is evidence for `chain_altered`.
    """
    recomputed = recompute_hashes(rows)
    hashes = [h if h is not None else row.hash for h, row in zip(recomputed, rows, strict=True)]
    position = {h: i for i, h in enumerate(hashes)}
    for seq in range(max(len(rows), len(onchain))):
        if seq < len(rows):
            found = _store_mismatch(seq, rows, recomputed, onchain, source)
            if found is not None:
                return found, hashes
        found = _chain_mismatch(seq, rows, hashes, position, onchain, source, onchain_txs)
        if found is not None:
            return found, hashes
    logged = hashes[: len(onchain)]  # past the log's count: decisions waiting in the outbox
    if head_onchain is not None and chain_head(logged) != head_onchain:
        seq = max(len(logged) - 1, 0)
        detail = (
            f"every entry matches but the DecisionLog's head {head_onchain} is not the running "
            f"head of the {len(logged)} hashes ({chain_head(logged)})"
        )
        return Mismatch(seq, "head_mismatch", detail, chain_head(logged), head_onchain), hashes
    return None, hashes


def _store_mismatch(
    seq: int,
    rows: Sequence[TrailEntry],
    recomputed: Sequence[str | None],
    onchain: Sequence[str],
    source: str,
) -> Mismatch | None:
    row = rows[seq]
    if row.seq != seq:
        moved = next((i for i, other in enumerate(rows) if other.seq == seq), None)
        if moved is None:
            detail = f"{source} has no decision {seq} (the next one is {row.seq})"
            return Mismatch(seq, "missing_record", detail)
        detail = f"decision {row.seq} is at {seq} in {source} and decision {seq} at {moved}"
        return Mismatch(seq, "reordered", detail, rows[moved].hash, row.hash)
    try:
        record = row.record()
    except AuditError as e:
        return Mismatch(seq, "altered_record", f"the stored record does not parse: {e}")
    own = recomputed[seq]
    if record.seq != seq:
        if 0 <= record.seq < len(rows):
            logged_at = onchain.index(own) if own in onchain else None
            where = f", logged at seq {logged_at}" if logged_at is not None else ""
            detail = f"the stored row {seq} holds decision {record.seq}{where}"
            return Mismatch(seq, "reordered", detail, row.hash, own)
        detail = f"the stored row {seq} holds a record with seq {record.seq}"
        return Mismatch(seq, "altered_record", detail, row.hash, own)
    if own != row.hash:
        detail = f"the stored record hashes to {own} but was stored with hash {row.hash}"
        return Mismatch(seq, "altered_record", detail, row.hash, own)
    expected_prev = ZERO_HASH if seq == 0 else recomputed[seq - 1] or rows[seq - 1].hash
    if record.prev_hash != expected_prev:
        detail = (
            f"prev_hash {record.prev_hash} is not the hash of decision {seq - 1} ({expected_prev})"
        )
        return Mismatch(seq, "broken_link", detail, expected_prev, record.prev_hash)
    return None


def _chain_mismatch(
    seq: int,
    rows: Sequence[TrailEntry],
    hashes: Sequence[str],
    position: dict[str, int],
    onchain: Sequence[str],
    source: str,
    onchain_txs: Sequence[str] = (),
) -> Mismatch | None:
    """Classify a difference between the record's hash and the on-chain entry at `seq`."""
    mine = hashes[seq] if seq < len(hashes) else None
    theirs = onchain[seq] if seq < len(onchain) else None
    if mine == theirs:
        return None
    if theirs is None:
        status = rows[seq].status
        if status in ("pending", "sent") and seq >= len(onchain):
            return None  # waiting in the outbox (a running service): not sent yet
        if status == GIVEN:
            detail = f"the DecisionLog has no entry {seq}"
        else:
            note = " (not sent yet: flush the outbox)" if status != "confirmed" else ""
            detail = f"the DecisionLog has no entry {seq}; the store has it as {status}{note}"
        return Mismatch(seq, "missing_entry", detail, mine, None)
    if mine is None:
        detail = f"the DecisionLog holds entry {seq} ({theirs}) but {source} has no decision {seq}"
        return Mismatch(seq, "extra_entry", detail, None, theirs)
    after = onchain[seq + 1] if seq + 1 < len(onchain) else None
    following = hashes[seq + 1] if seq + 1 < len(hashes) else None
    if theirs == following and after != mine:
        detail = (
            f"decision {seq} is missing from the DecisionLog (its entry {seq} is decision "
            f"{seq + 1})"
        )
        return Mismatch(seq, "missing_entry", detail, mine, theirs)
    if after == mine and theirs != following:
        detail = (
            f"the DecisionLog holds an extra entry {theirs} at seq {seq}, before decision {seq}"
        )
        return Mismatch(seq, "extra_entry", detail, mine, theirs)
    if theirs in position:
        detail = f"the DecisionLog holds decision {position[theirs]} at seq {seq}"
        return Mismatch(seq, "reordered", detail, mine, theirs)
    evidence = _entry_changed(seq, rows, hashes, onchain, onchain_txs)
    if evidence is not None:
        detail = (
            f"the DecisionLog's entry at seq {seq} ({theirs}) differs from the record {source} "
            f"holds, whose hash is intact ({mine}): {evidence}"
        )
        return Mismatch(seq, "chain_altered", detail, mine, theirs)
    detail = f"the record hashes to {mine} but the DecisionLog holds {theirs}"
    return Mismatch(seq, "altered_record", detail, mine, theirs)


def _entry_changed(
    seq: int,
    rows: Sequence[TrailEntry],
    hashes: Sequence[str],
    onchain: Sequence[str],
    onchain_txs: Sequence[str],
) -> str | None:
    """Return the evidence that the chain's entry at `seq` changed, not the record, or None.

    Either the log's own next entry is the hash of the next record, whose prev_hash is this
    record's hash (the chain itself vouches for the record), or the store recorded the
    transaction that logged the record and the node's entry comes from another one.
    """
    after = seq + 1
    if after < len(rows) and after < len(onchain) and hashes[after] == onchain[after]:
        try:
            linked = rows[after].record().prev_hash
        except AuditError:
            linked = None
        if linked == hashes[seq]:
            return (
                f"the log's own entry {after} is the hash of decision {after}, whose prev_hash "
                "is this record's hash"
            )
    logged_by = rows[seq].tx_hash
    if logged_by and seq < len(onchain_txs) and onchain_txs[seq] != logged_by:
        return (
            f"the store recorded it as logged by transaction {logged_by}, the node's entry "
            f"comes from transaction {onchain_txs[seq]}"
        )
    return None


# --- one decision -----------------------------------------------------------------------------


def prove(
    store: Store,
    backend: ChainBackend,
    decision_log_address: str,
    seq: int,
    *,
    page_blocks: int = PAGE_BLOCKS,
) -> DecisionProof:
    """Return one stored decision with its on-chain proof: entry, logging transaction and head.

    The entry is read from the DecisionsRecorded event that carries `seq`: first in the block
    the store recorded for it, else by scanning the log's events `page_blocks` blocks at a time.

    Raises:
        AuditError: the store has no decision `seq`.
        ChainError: the chain cannot be read.
    """
    row = read_decision(store, seq)
    if row is None:
        raise AuditError(f"the store has no decision {seq} (it holds seq 0 to the last one)")
    try:
        record: DecisionRecord | None = row.record()
    except AuditError:
        record = None
    recomputed = None if record is None else decision_hash(record)
    log = decision_log_contract(backend, decision_log_address)
    what = f"the DecisionLog at {decision_log_address}"
    block = int(read_chain("the block number", lambda: backend.w3.eth.block_number))
    count = int(read_chain(what, log.functions.count().call, block_identifier=block))
    head = _hex(read_chain(what, log.functions.head().call, block_identifier=block))
    batch = None
    if seq < count:
        batch = _find_batch(backend, log, seq, row.block_number, block, page_blocks)
    return DecisionProof(
        seq=seq,
        record=record,
        stored_hash=row.hash,
        recomputed_hash=recomputed,
        status=row.status,
        onchain_hash=None if batch is None else batch.hashes[seq - batch.first_seq],
        tx_hash=None if batch is None else batch.tx_hash,
        block_number=None if batch is None else batch.block_number,
        head_after=None if batch is None else batch.head_after(seq),
        head=head,
        onchain_count=count,
        decision_log=Web3.to_checksum_address(decision_log_address),
    )


def _find_batch(
    backend: ChainBackend,
    log: Any,
    seq: int,
    hint_block: int | None,
    latest: int,
    page_blocks: int,
) -> LoggedBatch | None:
    """Return the DecisionsRecorded event carrying `seq`: first in the hinted block, else any."""
    if hint_block is not None and 0 <= hint_block <= latest:
        for batch in iter_batches(backend, log, hint_block, hint_block, 1):
            if batch.covers(seq):
                return batch
    for batch in iter_batches(backend, log, 0, latest, page_blocks):
        if batch.covers(seq):
            return batch
    return None
