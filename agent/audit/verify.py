"""Verify the decision trail: every stored record against its hash, its predecessor and the chain.

`verify` recomputes each record's hash from the stored JSON, checks the `prev_hash` links,
compares hash by hash with the DecisionLog (read with `hashRange`, a page at a time) and finally
compares the on-chain head with the head of the recomputed hashes. It reports the FIRST
mismatch, by sequence number, and what it looks like:

    missing_record  the store has no decision at this seq (a gap in the table)
    altered_record  the stored record no longer hashes to what was stored / logged
    broken_link     the record's prev_hash is not the hash of the record before it
    reordered       the decision at this seq is another seq's (store or chain order changed)
    missing_entry   the chain lacks this decision (later entries shifted, or never sent)
    extra_entry     the chain holds an entry the store does not
    head_mismatch   every entry matches but the log's head does not (not a DecisionLog?)

`find_first_mismatch` is the pure comparison, for tests and other callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from web3 import Web3

from agent.audit.outbox import (
    StoredDecision,
    decision_log_contract,
    iter_decisions,
    read_chain,
    read_decision,
)
from agent.audit.record import ZERO_HASH, DecisionRecord, chain_head, decision_hash
from agent.chain.backends import ChainBackend
from agent.errors import AuditError
from agent.store import Store

MismatchKind = Literal[
    "missing_record",
    "altered_record",
    "broken_link",
    "reordered",
    "missing_entry",
    "extra_entry",
    "head_mismatch",
]
PAGE_SIZE = 500
"""Hashes per `hashRange` call (~1.1M gas of reads, far under any node's eth_call cap)."""


@dataclass(frozen=True)
class Mismatch:
    """The first place where the store and the chain disagree.

    Attributes:
        seq: the sequence number.
        kind: see the module docstring.
        detail: one human sentence.
        expected: the hash the store implies at `seq` (recomputed), if any.
        found: the hash found there (stored column or on-chain entry), if any.
    """

    seq: int
    kind: MismatchKind
    detail: str
    expected: str | None = None
    found: str | None = None


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `verify`.

    Attributes:
        decision_log: the DecisionLog's address.
        stored: decisions in the store.
        onchain: entries in the DecisionLog.
        verified: decisions that matched before the first mismatch (all of them if ok).
        head_onchain: the DecisionLog's head.
        head_recomputed: the running head of the hashes recomputed from the store.
        mismatch: the first mismatch, or None.
    """

    decision_log: str
    stored: int
    onchain: int
    verified: int
    head_onchain: str
    head_recomputed: str
    mismatch: Mismatch | None

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
        onchain_hash: `hashAt(seq)` on the DecisionLog (None if the log is shorter).
        tx_hash: the transaction whose DecisionRecorded event logged it (None if not found).
        block_number: that transaction's block.
        head_after: the head the event reported right after this entry.
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


def read_onchain_hashes(
    backend: ChainBackend, decision_log_address: str, *, page_size: int = PAGE_SIZE
) -> tuple[list[str], str]:
    """Return every hash in the DecisionLog (bytes32 hex, in order) and its head.

    The count, pages and head are read at one block, so a writer cannot skew them.
    """
    log = decision_log_contract(backend, decision_log_address)
    what = f"the DecisionLog at {decision_log_address}"
    block = int(read_chain("the block number", lambda: backend.w3.eth.block_number))
    count = int(read_chain(what, log.functions.count().call, block_identifier=block))
    head = "0x" + bytes(read_chain(what, log.functions.head().call, block_identifier=block)).hex()
    hashes: list[str] = []
    while len(hashes) < count:
        call = log.functions.hashRange(len(hashes), page_size)
        page = read_chain(what, call.call, block_identifier=block)
        if not page:
            raise AuditError(f"{what} returned no hashes from seq {len(hashes)} of {count}")
        hashes.extend("0x" + bytes(h).hex() for h in page)
    return hashes, head


def verify(
    store: Store,
    backend: ChainBackend,
    decision_log_address: str,
    *,
    page_size: int = PAGE_SIZE,
) -> VerifyReport:
    """Check every stored decision against its hash, its predecessor and the DecisionLog.

    Returns a report naming the first mismatch (None when everything verifies); it does not
    raise on a mismatch, only when the chain cannot be read (ChainError).
    """
    rows = list(iter_decisions(store))
    onchain, head = read_onchain_hashes(backend, decision_log_address, page_size=page_size)
    mismatch, recomputed = find_first_mismatch(rows, onchain, head)
    verified = len(rows) if mismatch is None else mismatch.seq
    return VerifyReport(
        decision_log=Web3.to_checksum_address(decision_log_address),
        stored=len(rows),
        onchain=len(onchain),
        verified=verified,
        head_onchain=head,
        head_recomputed=chain_head(recomputed),
        mismatch=mismatch,
    )


def recompute_hashes(rows: Sequence[StoredDecision]) -> list[str | None]:
    """Return the hash recomputed from each stored record (None where it does not parse)."""
    hashes: list[str | None] = []
    for row in rows:
        try:
            hashes.append(decision_hash(row.record()))
        except AuditError:
            hashes.append(None)
    return hashes


def find_first_mismatch(
    rows: Sequence[StoredDecision], onchain: Sequence[str], head_onchain: str | None = None
) -> tuple[Mismatch | None, list[str]]:
    """Compare stored decisions (in seq order) with on-chain hashes; return the first mismatch.

    Also returns the recomputed hashes of the records (a record that does not parse counts
    with its stored hash, so the head can still be compared).
    """
    recomputed = recompute_hashes(rows)
    hashes = [h if h is not None else row.hash for h, row in zip(recomputed, rows, strict=True)]
    position = {h: i for i, h in enumerate(hashes)}
    for seq in range(max(len(rows), len(onchain))):
        if seq < len(rows):
            found = _store_mismatch(seq, rows, recomputed, onchain)
            if found is not None:
                return found, hashes
        found = _chain_mismatch(seq, rows, hashes, position, onchain)
        if found is not None:
            return found, hashes
    if head_onchain is not None and chain_head(hashes) != head_onchain:
        seq = max(len(hashes) - 1, 0)
        detail = (
            f"every entry matches but the DecisionLog's head {head_onchain} is not the running "
            f"head of the {len(hashes)} hashes ({chain_head(hashes)})"
        )
        return Mismatch(seq, "head_mismatch", detail, chain_head(hashes), head_onchain), hashes
    return None, hashes


def _store_mismatch(
    seq: int,
    rows: Sequence[StoredDecision],
    recomputed: Sequence[str | None],
    onchain: Sequence[str],
) -> Mismatch | None:
    row = rows[seq]
    if row.seq != seq:
        return Mismatch(
            seq, "missing_record", f"the store has no decision {seq} (the next one is {row.seq})"
        )
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
    rows: Sequence[StoredDecision],
    hashes: Sequence[str],
    position: dict[str, int],
    onchain: Sequence[str],
) -> Mismatch | None:
    """Classify a difference between the stored hash and the on-chain entry at `seq`."""
    mine = hashes[seq] if seq < len(hashes) else None
    theirs = onchain[seq] if seq < len(onchain) else None
    if mine == theirs:
        return None
    if theirs is None:
        status = rows[seq].status
        note = " (not sent yet: flush the outbox)" if status != "confirmed" else ""
        detail = f"the DecisionLog has no entry {seq}; the store has it as {status}{note}"
        return Mismatch(seq, "missing_entry", detail, mine, None)
    if mine is None:
        detail = f"the DecisionLog holds entry {seq} ({theirs}) but the store has no decision {seq}"
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
    detail = f"the stored record hashes to {mine} but the DecisionLog holds {theirs}"
    return Mismatch(seq, "altered_record", detail, mine, theirs)


def prove(
    store: Store, backend: ChainBackend, decision_log_address: str, seq: int
) -> DecisionProof:
    """Return one stored decision with its on-chain proof: entry, logging transaction and head.

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
    count = int(read_chain(what, log.functions.count().call))
    head = "0x" + bytes(read_chain(what, log.functions.head().call)).hex()
    onchain_hash = None
    tx_hash = block_number = head_after = None
    if seq < count:
        onchain_hash = "0x" + bytes(read_chain(what, log.functions.hashAt(seq).call)).hex()
        event = _find_event(backend, log, seq, row.block_number)
        if event is not None:
            tx_hash = "0x" + bytes(event["transactionHash"]).hex()
            block_number = int(event["blockNumber"])
            head_after = "0x" + bytes(event["args"]["head"]).hex()
    return DecisionProof(
        seq=seq,
        record=record,
        stored_hash=row.hash,
        recomputed_hash=recomputed,
        status=row.status,
        onchain_hash=onchain_hash,
        tx_hash=tx_hash,
        block_number=block_number,
        head_after=head_after,
        head=head,
        onchain_count=count,
        decision_log=Web3.to_checksum_address(decision_log_address),
    )


def _find_event(backend: ChainBackend, log: Any, seq: int, hint_block: int | None) -> Any:
    """Return the DecisionRecorded event of `seq`: first in the stored block, else any block."""
    event_type = log.events.DecisionRecorded
    ranges: list[tuple[int, int | str]] = []
    if hint_block is not None:
        ranges.append((hint_block, hint_block))
    ranges.append((0, "latest"))
    for start, end in ranges:
        events = read_chain(
            f"the DecisionRecorded events of seq {seq}",
            event_type.get_logs,
            from_block=start,
            to_block=end,
            argument_filters={"seq": seq},
        )
        if events:
            return events[-1]
    return None
