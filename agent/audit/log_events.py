"""Read a DecisionLog: its storage and the hashes its events carry, checked against each other.

The DecisionLog keeps only `count`, `head` and a checkpoint of the head every 1,000 entries in
storage; the hashes themselves are in its `DecisionsRecorded` events (one per transaction:
first seq, head before and after, the hashes). `read_decision_log` reads those events with
eth_getLogs, a block range at a time, reassembles the hashes in seq order and checks that they
reproduce the contract's stored head and checkpoints; where they stop doing so it reports a
`log_inconsistent` mismatch. `agent.audit.verify` compares the result with the records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from web3 import Web3

from agent.audit.outbox import decision_log_contract, read_chain
from agent.audit.record import ZERO_HASH, chain_head
from agent.chain.backends import ChainBackend
from agent.errors import AuditError

MismatchKind = Literal[
    "missing_record",
    "altered_record",
    "chain_altered",
    "broken_link",
    "reordered",
    "missing_entry",
    "extra_entry",
    "head_mismatch",
    "log_inconsistent",
]
PAGE_BLOCKS = 5_000
"""Blocks per eth_getLogs call: under the range limit of common RPC providers (often 10,000)."""


@dataclass(frozen=True)
class Mismatch:
    """The first place where the records and the chain disagree.

    Attributes:
        seq: the sequence number.
        kind: see the module docstring.
        detail: one human sentence.
        expected: the hash the records imply at `seq` (recomputed), if any.
        found: the hash found there (stored column or on-chain entry), if any.
    """

    seq: int
    kind: MismatchKind
    detail: str
    expected: str | None = None
    found: str | None = None


@dataclass(frozen=True)
class LoggedBatch:
    """One `DecisionsRecorded` event: the hashes one transaction logged.

    Attributes:
        first_seq: the sequence number of the first hash.
        hashes: the hashes (bytes32 hex), in order.
        prev_head: the log's head before them.
        head: the log's head after them.
        tx_hash: the transaction that logged them.
        block_number: its block.
    """

    first_seq: int
    hashes: tuple[str, ...]
    prev_head: str
    head: str
    tx_hash: str
    block_number: int

    def covers(self, seq: int) -> bool:
        """Whether this event carries entry `seq`."""
        return self.first_seq <= seq < self.first_seq + len(self.hashes)

    def head_after(self, seq: int) -> str:
        """Return the log's head right after entry `seq` (which this event carries)."""
        return chain_head(list(self.hashes[: seq - self.first_seq + 1]), self.prev_head)


@dataclass(frozen=True)
class OnchainLog:
    """A DecisionLog as read at one block: its storage and the hashes its events carry.

    Attributes:
        address: the DecisionLog's checksum address.
        block: the block everything was read at.
        count: `count()`.
        head: `head()`.
        hashes: the hashes the events carry, in seq order (up to the first inconsistency).
        inconsistency: where the events stop reproducing the storage (kind
            "log_inconsistent"), or None.
        entry_txs: the transaction that logged each of `hashes`.
    """

    address: str
    block: int
    count: int
    head: str
    hashes: list[str]
    inconsistency: Mismatch | None
    entry_txs: tuple[str, ...] = ()


def read_decision_log(
    backend: ChainBackend,
    decision_log_address: str,
    *,
    page_blocks: int = PAGE_BLOCKS,
    from_block: int = 0,
) -> OnchainLog:
    """Read a DecisionLog: its storage, and its hashes from its events, checked against it.

    Storage (count, head, checkpoints) and events are read at one block, so a writer cannot
    skew them. Events are fetched `page_blocks` blocks per eth_getLogs call, from `from_block`
    (the log's deployment block, if known) to that block. The node must still serve the log's
    events: one that pruned them yields an inconsistency, not a wrong answer.

    Raises:
        AuditError: `page_blocks` or `from_block` is out of range.
        ChainError: the chain cannot be read.
    """
    if page_blocks < 1 or from_block < 0:
        raise AuditError(
            f"page_blocks = {page_blocks}, from_block = {from_block}: expected at least 1 and 0"
        )
    log = decision_log_contract(backend, decision_log_address)
    what = f"the DecisionLog at {decision_log_address}"
    block = int(read_chain("the block number", lambda: backend.w3.eth.block_number))
    count = int(read_chain(what, log.functions.count().call, block_identifier=block))
    head = _hex(read_chain(what, log.functions.head().call, block_identifier=block))
    interval = int(read_chain(what, log.functions.CHECKPOINT_INTERVAL().call))
    batches = list(iter_batches(backend, log, from_block, block, page_blocks))
    hashes, heads, inconsistency = _assemble(batches, interval)
    entry_txs = tuple(batch.tx_hash for batch in batches for _ in batch.hashes)[: len(hashes)]
    if inconsistency is None:
        inconsistency = _check_storage(log, block, count, head, hashes, heads, interval)
    return OnchainLog(
        address=Web3.to_checksum_address(decision_log_address),
        block=block,
        count=count,
        head=head,
        hashes=hashes,
        inconsistency=inconsistency,
        entry_txs=entry_txs,
    )


def read_onchain_hashes(
    backend: ChainBackend,
    decision_log_address: str,
    *,
    page_blocks: int = PAGE_BLOCKS,
    from_block: int = 0,
) -> tuple[list[str], str]:
    """Return every hash in the DecisionLog (bytes32 hex, in order, from its events) and its head.

    Raises:
        AuditError: the events do not reproduce the log's storage (see `read_decision_log`).
        ChainError: the chain cannot be read.
    """
    log = read_decision_log(
        backend, decision_log_address, page_blocks=page_blocks, from_block=from_block
    )
    if log.inconsistency is not None:
        raise AuditError(
            f"the DecisionLog at {log.address} is inconsistent at seq {log.inconsistency.seq}: "
            f"{log.inconsistency.detail}"
        )
    return log.hashes, log.head


def iter_batches(
    backend: ChainBackend, log: Any, from_block: int, to_block: int, page_blocks: int
) -> Iterator[LoggedBatch]:
    """Yield the log's DecisionsRecorded events in chain order, `page_blocks` blocks per call."""
    if page_blocks < 1:
        raise AuditError(f"page_blocks = {page_blocks}: expected at least 1")
    event = log.events.DecisionsRecorded
    for start in range(from_block, to_block + 1, page_blocks):
        end = min(start + page_blocks - 1, to_block)
        events = read_chain(
            f"the DecisionsRecorded events of blocks {start} to {end}",
            lambda start=start, end=end: list(event.get_logs(from_block=start, to_block=end)),
        )
        for found in sorted(events, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"]))):
            yield _batch(found)


def _batch(event: Any) -> LoggedBatch:
    args = event["args"]
    return LoggedBatch(
        first_seq=int(args["firstSeq"]),
        hashes=tuple(_hex(h) for h in args["decisionHashes"]),
        prev_head=_hex(args["prevHead"]),
        head=_hex(args["head"]),
        tx_hash=_hex(event["transactionHash"]),
        block_number=int(event["blockNumber"]),
    )


def _assemble(
    batches: Iterable[LoggedBatch], interval: int
) -> tuple[list[str], dict[int, str], Mismatch | None]:
    """Join the events into one sequence of hashes; return it, the running heads and the first
    inconsistency. heads[k] is the head after k * interval entries (a checkpoint's value);
    heads[-1] the head after all of them."""
    hashes: list[str] = []
    running = ZERO_HASH
    heads = {0: ZERO_HASH, -1: ZERO_HASH}
    for batch in batches:
        seq = len(hashes)
        where = f"the event of transaction {batch.tx_hash} (block {batch.block_number})"
        if batch.first_seq > seq:
            detail = (
                f"no DecisionsRecorded event carries entry {seq}; {where} starts at seq "
                f"{batch.first_seq} (the node may have pruned old logs)"
            )
            return hashes, heads, Mismatch(seq, "log_inconsistent", detail)
        if batch.first_seq < seq:
            detail = f"entry {batch.first_seq} is carried twice: again by {where}"
            return hashes, heads, Mismatch(batch.first_seq, "log_inconsistent", detail)
        if batch.prev_head != running:
            detail = (
                f"{where} starts from head {batch.prev_head} but the entries before it give "
                f"{running}"
            )
            mismatch = Mismatch(seq, "log_inconsistent", detail, running, batch.prev_head)
            return hashes, heads, mismatch
        entries = list(batch.hashes)
        while entries:
            take = min(len(entries), interval - len(hashes) % interval)
            running = chain_head(entries[:take], running)
            hashes.extend(entries[:take])
            del entries[:take]
            if len(hashes) % interval == 0:
                heads[len(hashes) // interval] = running
        heads[-1] = running
        if running != batch.head:
            detail = f"{where} reports head {batch.head} but its hashes give {running}"
            mismatch = Mismatch(seq, "log_inconsistent", detail, running, batch.head)
            return hashes, heads, mismatch
    return hashes, heads, None


def _check_storage(
    log: Any,
    block: int,
    count: int,
    head: str,
    hashes: Sequence[str],
    heads: dict[int, str],
    interval: int,
) -> Mismatch | None:
    """Check the stored checkpoints, count and head against what the events give."""
    what = f"the checkpoints of the DecisionLog at {log.address}"
    for k in range(1, min(count, len(hashes)) // interval + 1):
        call = log.functions.checkpoints(k).call
        stored = _hex(read_chain(what, call, block_identifier=block))
        if stored != heads[k]:
            detail = (
                f"checkpoint {k} (the head after {k * interval} entries) is {stored} but the "
                f"events give {heads[k]}"
            )
            return Mismatch(k * interval - 1, "log_inconsistent", detail, heads[k], stored)
    if len(hashes) < count:
        detail = (
            f"the DecisionLog counts {count} entries but its events carry only {len(hashes)}: "
            f"no event carries entry {len(hashes)} (the node may have pruned old logs)"
        )
        return Mismatch(len(hashes), "log_inconsistent", detail)
    if len(hashes) > count:
        detail = f"the events carry {len(hashes)} entries but the DecisionLog counts {count}"
        return Mismatch(count, "log_inconsistent", detail)
    events_head = heads[-1]
    if events_head != head:
        detail = f"the events give head {events_head} but the DecisionLog's head() is {head}"
        return Mismatch(max(count - 1, 0), "log_inconsistent", detail, events_head, head)
    return None


# --- verifying --------------------------------------------------------------------------------


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()
