"""The decision outbox: records are written to the store first, then sent to the DecisionLog.

The `decisions` table is the source of truth. `append_decision` assigns the next sequence
number and chains the record to the previous one inside one SQLite transaction; the
`DecisionOutbox` then sends every stored hash the chain lacks, one transaction per batch
(`recordBatch`) or per decision (`record`, batch size 1), each decision its own on-chain entry
(carried in the transaction's one `DecisionsRecorded` event; the log's storage keeps only its
count, head and checkpoints).

Exactly once, across crashes and downtime: before sending, the outbox reads the log's `count()`
and sends only the decisions with `seq >= count`, after checking that the log's head equals the
running head of the stored hashes below `count` (so it never appends to a log that diverged
from the store). It also waits while the operator has transactions in flight, so a send whose
receipt was lost is never doubled by a resend. Chain errors are retried with exponential
backoff; what cannot be sent stays `pending` in the store for the next flush. A dev chain whose
head went stale is first brought up to the wall clock (`agent.chain.clock`), so the block that
logs a decision bears the time it was sent.

Errors: `ChainError` (the node failed; the decisions stay pending), `TransactionReverted` (a
send reverted), `AuditError` (the store's chain is broken or the log diverged from it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.exceptions import Web3Exception
from web3.logs import DISCARD

from agent.audit.record import (
    ZERO_HASH,
    DecisionFields,
    DecisionRecord,
    canonical_json,
    chain_head,
    decision_hash,
    record_from_json,
)
from agent.chain.backends import ChainBackend
from agent.chain.clock import catch_up_head
from agent.chain.contracts import load_artifact
from agent.errors import AuditError, ChainError, TransactionReverted
from agent.store import Store

DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 500
"""A batch of 500 uses ~0.7M gas, far under the 30M block gas limit of anvil and eth-tester."""

_GAS_BASE = 120_000
_GAS_PER_ENTRY = 2_000
"""Gas sent with a batch: measured ~1.5k per entry in batches (the calldata floor of EIP-7623:
40 gas per non-zero byte), ~37.4k for a single `record`; the base covers the first write to a
fresh log (two zero-to-non-zero slots) and a checkpoint slot every 1,000 entries. A fixed limit
skips `eth_estimateGas`, which costs as much as the transaction on py-evm."""

STATUSES = ("pending", "sent", "confirmed")


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """One row of the `decisions` table.

    Attributes:
        seq: the decision's sequence number (the table's primary key).
        hash: the decision hash computed when the record was stored (bytes32 hex).
        record_json: the record as canonical JSON.
        status: 'pending' (not sent), 'sent' (in a transaction not yet confirmed) or
            'confirmed' (on the DecisionLog).
        tx_hash: the transaction that logged it, when known.
        block_number: the block of that transaction, when known.
        attempts: how many transactions tried to log it.
        last_error: the error of the last failed attempt, if any.
    """

    seq: int
    hash: str
    record_json: str
    status: str
    tx_hash: str | None
    block_number: int | None
    attempts: int
    last_error: str | None

    def record(self) -> DecisionRecord:
        """Parse the stored record (raises AuditError if it is not a valid record)."""
        return record_from_json(self.record_json)


_COLUMNS = "seq, hash, record, status, tx_hash, block_number, attempts, last_error"


def append_decision(store: Store, fields: DecisionFields) -> DecisionRecord:
    """Store a new decision at the next sequence number, chained to the last stored one.

    The sequence number and `prev_hash` are read and the row written in one immediate
    transaction, so concurrent writers to the same database cannot fork the trail. While
    another process holds the write lock, the transaction waits and retries
    (`Store.transaction`); the record is built inside it, so a retry never writes twice.
    """
    with store.transaction("a decision record") as conn:
        last = conn.execute(
            "SELECT seq, hash, head FROM decisions ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev, head = (0, ZERO_HASH, ZERO_HASH) if last is None else last
        seq = 0 if last is None else int(seq) + 1
        if head is None:  # stored before decisions kept their heads: fill them in, once
            head = _fill_heads(conn)
        record = fields.to_record(seq, prev)
        digest = decision_hash(record)
        now = _now_ms()
        conn.execute(
            "INSERT INTO decisions (seq, hash, record, status, attempts, created_ms, updated_ms, "
            "head) VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)",
            [seq, digest, canonical_json(record), now, now, chain_head([digest], head)],
        )
    return record


def fill_heads(store: Store) -> None:
    """Write the running heads of the decisions stored before decisions kept them.

    Once, after the upgrade that added heads (the service does it as it starts; the next
    `append_decision` would too), so `stored_head` is one read from then on. Heads missing
    are always the newest decisions: a store that has its last head has them all.
    """
    with store.transaction("the decisions' heads") as conn:
        last = conn.execute("SELECT head FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
        if last is not None and last[0] is None:
            _fill_heads(conn)


def _fill_heads(conn: Any) -> str:
    """Write the running head of every decision stored without one; return the last head."""
    base = conn.execute(
        "SELECT seq, head FROM decisions WHERE head IS NOT NULL ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    seq, head = (-1, ZERO_HASH) if base is None else (int(base[0]), str(base[1]))
    heads = []
    for number, digest in conn.execute(
        "SELECT seq, hash FROM decisions WHERE seq > ? ORDER BY seq", [seq]
    ).fetchall():
        head = chain_head([digest], head)
        heads.append((head, number))
    conn.executemany("UPDATE decisions SET head = ? WHERE seq = ?", heads)
    return head


def stored_head(store: Store, count: int) -> str:
    """Return the DecisionLog head that the first `count` stored decisions make.

    Read from the head stored with the decision `count - 1` (each decision keeps the running
    head it makes, written with it), so the head of a long trail is one read; decisions stored
    before heads were kept are hashed from the last stored head. It is the head as written: a
    hash changed in the store afterwards is what `agora audit verify` finds, not this.

    Raises:
        AuditError: the store holds fewer than `count` decisions.
    """
    if count <= 0:
        return ZERO_HASH
    row = store.db.execute("SELECT head FROM decisions WHERE seq = ?", [count - 1]).fetchone()
    if row is None:
        raise AuditError(f"the store holds fewer than {count} decisions: no head for them")
    if row[0] is not None:
        return str(row[0])
    base = store.db.execute(
        "SELECT seq, head FROM decisions WHERE seq < ? AND head IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1",
        [count - 1],
    ).fetchone()
    seq, head = (-1, ZERO_HASH) if base is None else (int(base[0]), str(base[1]))
    return chain_head([h for _, h in read_hashes(store, seq + 1, count - 1 - seq)], head)


def stored_count(store: Store) -> int:
    """Return the number of stored decisions (one more than the last sequence number)."""
    row = store.db.execute("SELECT MAX(seq) FROM decisions").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def unconfirmed_count(store: Store) -> int:
    """Return how many stored decisions are not confirmed on the DecisionLog."""
    row = store.db.execute("SELECT COUNT(*) FROM decisions WHERE status != 'confirmed'")
    return int(row.fetchone()[0])


def read_decisions(store: Store, start: int = 0, limit: int | None = None) -> list[StoredDecision]:
    """Return stored decisions with `seq >= start`, in sequence order (at most `limit`)."""
    rows = store.db.execute(
        f"SELECT {_COLUMNS} FROM decisions WHERE seq >= ? ORDER BY seq LIMIT ?",
        [start, -1 if limit is None else limit],
    ).fetchall()
    return [_stored(row) for row in rows]


def read_hashes(store: Store, start: int = 0, limit: int | None = None) -> list[tuple[int, str]]:
    """Return (seq, hash) of stored decisions with `seq >= start`, in order (at most `limit`)."""
    rows = store.db.execute(
        "SELECT seq, hash FROM decisions WHERE seq >= ? ORDER BY seq LIMIT ?",
        [start, -1 if limit is None else limit],
    ).fetchall()
    return [(int(seq), str(h)) for seq, h in rows]


def read_decision(store: Store, seq: int) -> StoredDecision | None:
    """Return the stored decision at `seq`, or None."""
    row = store.db.execute(f"SELECT {_COLUMNS} FROM decisions WHERE seq = ?", [seq]).fetchone()
    return None if row is None else _stored(row)


def iter_decisions(store: Store, page_size: int = 5_000) -> Iterator[StoredDecision]:
    """Yield every stored decision in sequence order, a page at a time."""
    start = 0
    while True:
        page = read_decisions(store, start, page_size)
        yield from page
        if len(page) < page_size:
            return
        start = page[-1].seq + 1


def decision_log_contract(backend: ChainBackend, address: str) -> Any:
    """Return a web3 contract object for the DecisionLog at `address`."""
    return backend.w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact("DecisionLog").abi
    )


def read_chain(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn(*args, **kwargs)` (a chain read), turning node failures into ChainError."""
    try:
        return fn(*args, **kwargs)
    except (OSError, Web3Exception, ValueError) as e:
        raise ChainError(f"cannot read {what}: {e}") from e


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What a flush did.

    Attributes:
        sent: decisions this flush logged on-chain.
        transactions: transactions this flush sent (each logging up to a batch of decisions).
        onchain: the DecisionLog's `count()` afterwards (as last read).
        pending: stored decisions not yet confirmed on-chain.
        head: the DecisionLog's head afterwards (as last read).
        attempts: delivery attempts made.
        error: the last chain error if decisions are still pending because of it, else None.
    """

    sent: int
    transactions: int
    onchain: int
    pending: int
    head: str
    attempts: int
    error: str | None = None


class DecisionOutbox:
    """Send the stored decisions the DecisionLog lacks, exactly once, retrying on chain errors.

    Args:
        store: the database holding the `decisions` table.
        backend: the chain; its operator must hold WRITER_ROLE on the log.
        decision_log_address: the DecisionLog.
        batch_size: decisions per transaction (1: one `record` call each).
        max_attempts: delivery attempts per `flush` before it gives up (the decisions stay
            pending for the next flush).
        backoff_s: wait after the first failed attempt; doubled after each further one.
        max_backoff_s: the longest wait between attempts.
        sleep: the wait function (tests pass a fake).
        clock: a monotonic clock, for the backoff of `try_flush`.
        wall_clock: the wall clock (Unix seconds) a stale dev chain is brought up to.
    """

    def __init__(
        self,
        store: Store,
        backend: ChainBackend,
        decision_log_address: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise AuditError(f"batch_size = {batch_size}: expected 1 to {MAX_BATCH_SIZE}")
        if max_attempts < 1:
            raise AuditError(f"max_attempts = {max_attempts}: expected at least 1")
        self.store = store
        self.backend = backend
        self.address = Web3.to_checksum_address(decision_log_address)
        self.log = decision_log_contract(backend, self.address)
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._writer_checked = False
        self._verified: tuple[int, str] = (0, ZERO_HASH)
        """(n, head): the log's first n entries are known to equal the stored hashes."""
        self._onchain: tuple[int, str] = (0, ZERO_HASH)
        self._retry_at = 0.0
        self._failures = 0
        self._sent = 0
        self._transactions = 0

    # --- public -----------------------------------------------------------------------
    def flush(self, *, max_attempts: int | None = None) -> FlushReport:
        """Send every stored decision the log lacks, retrying chain errors with backoff.

        Raises:
            ChainError: still failing after `max_attempts` (default: the outbox's); every
                decision not yet on-chain stays pending in the store.
            TransactionReverted: a send reverted (not retried: it would revert again).
            AuditError: the DecisionLog holds entries that differ from the store.
        """
        attempts = self.max_attempts if max_attempts is None else max_attempts
        delay = self.backoff_s
        self._sent = self._transactions = 0
        for attempt in range(1, attempts + 1):
            try:
                self._deliver()
            except TransactionReverted:
                raise
            except ChainError as e:
                self._failed(e)
                if attempt == attempts:
                    raise ChainError(
                        f"{unconfirmed_count(self.store)} decision(s) not yet on the DecisionLog "
                        f"at {self.address} after {attempts} attempt(s); they stay pending in "
                        f"the store for the next flush. Last error: {e}"
                    ) from e
                self._sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
            else:
                self._succeeded()
                return self._report(attempt, None)
        raise AssertionError("unreachable")  # pragma: no cover

    def try_flush(self) -> FlushReport:
        """Make one delivery attempt unless backing off after a failure; never raise ChainError.

        For callers that must not stop when the chain is down (a running backtest or service):
        the decisions stay pending and a later call sends them.

        Raises:
            TransactionReverted: a send reverted.
            AuditError: the DecisionLog holds entries that differ from the store.
        """
        self._sent = self._transactions = 0
        if self._clock() < self._retry_at:
            return self._report(0, "backing off after a chain error")
        try:
            self._deliver()
        except TransactionReverted:
            raise
        except ChainError as e:
            self._failed(e)
            return self._report(1, str(e))
        self._succeeded()
        return self._report(1, None)

    # --- delivery ---------------------------------------------------------------------
    def _deliver(self) -> None:
        self._check_writer()
        count, head = self._read_state()
        total = stored_count(self.store)
        if count > total:
            raise AuditError(
                f"the DecisionLog at {self.address} holds {count} entries but the store only "
                f"{total} decisions: extra entry at seq {total}; refusing to append"
            )
        self._check_continuity(count, head)
        self._reconcile_statuses(count)
        if count == total:
            return
        in_flight = self._in_flight()
        if in_flight:
            raise ChainError(
                f"{in_flight} transaction(s) of {self.backend.operator} still in flight; "
                "waiting for them before sending decisions (a resend could log one twice)"
            )
        while True:
            batch = read_hashes(self.store, self._onchain[0], self.batch_size)
            if not batch:
                return
            self._send(batch)

    def _send(self, batch: Sequence[tuple[int, str]]) -> None:
        seqs = [seq for seq, _ in batch]
        first = seqs[0]
        if first != self._onchain[0] or seqs != list(range(first, first + len(seqs))):
            raise AuditError(
                f"the stored decisions from seq {first} are not contiguous or the outbox is "
                f"out of step with the log (at {self._onchain[0]}): run `agora audit verify`"
            )
        catch_up_head(self.backend, self._wall_clock())
        self._mark(seqs, "sent", attempts=1)
        hashes = [bytes.fromhex(h[2:]) for _, h in batch]
        call = (
            self.log.functions.record(hashes[0])
            if len(batch) == 1
            else self.log.functions.recordBatch(hashes)
        )
        try:
            receipt = self.backend.transact(call, gas=_GAS_BASE + _GAS_PER_ENTRY * len(batch))
        except ChainError as e:
            self._mark(seqs, "sent", error=str(e))
            raise
        events = self.log.events.DecisionsRecorded().process_receipt(receipt, errors=DISCARD)
        expected = [h for _, h in batch]
        logged = [_logged_batch(ev) for ev in events]
        if logged != [(first, self._onchain[1], expected)]:
            raise AuditError(
                f"the DecisionLog at {self.address} did not log the batch from seq {first} "
                f"after head {self._onchain[1]} (it logged {len(events)} event(s)): another "
                "writer appended concurrently; the log now diverges"
            )
        new_head = "0x" + bytes(events[0]["args"]["head"]).hex()
        if new_head != chain_head(expected, self._onchain[1]):
            raise AuditError(f"the DecisionLog head after seq {seqs[-1]} is not the expected one")
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        self._mark(seqs, "confirmed", tx_hash=tx_hash, block_number=int(receipt["blockNumber"]))
        self._onchain = self._verified = (seqs[-1] + 1, new_head)
        self._sent += len(batch)
        self._transactions += 1

    def _check_writer(self) -> None:
        if self._writer_checked:
            return
        role = read_chain("WRITER_ROLE", self.log.functions.WRITER_ROLE().call)
        has_role = self.log.functions.hasRole(role, self.backend.operator)
        if not read_chain(f"the roles of the DecisionLog at {self.address}", has_role.call):
            raise AuditError(
                f"{self.backend.operator} does not hold WRITER_ROLE on the DecisionLog at "
                f"{self.address}: it cannot log decisions"
            )
        self._writer_checked = True

    def _read_state(self) -> tuple[int, str]:
        what = f"the DecisionLog at {self.address}"
        count = int(read_chain(what, self.log.functions.count().call))
        head = "0x" + bytes(read_chain(what, self.log.functions.head().call)).hex()
        self._onchain = (count, head)
        return count, head

    def _check_continuity(self, count: int, head: str) -> None:
        """Check that the log's head is the running head of the first `count` stored hashes."""
        known, known_head = self._verified
        if count < known:
            known, known_head = 0, ZERO_HASH  # the log shrank: a new chain, check from scratch
        hashes = [h for _, h in read_hashes(self.store, known, count - known)]
        expected = chain_head(hashes, known_head)
        if expected != head:
            raise AuditError(
                f"the DecisionLog at {self.address} has {count} entries whose head {head} is not "
                f"the head of the first {count} stored decisions ({expected}): the log diverged "
                "from the store; run `agora audit verify` to find where"
            )
        self._verified = (count, head)

    def _in_flight(self) -> int:
        eth, operator = self.backend.w3.eth, self.backend.operator
        pending = read_chain(
            "the pending nonce", lambda: eth.get_transaction_count(operator, "pending")
        )
        mined = read_chain("the nonce", lambda: eth.get_transaction_count(operator, "latest"))
        return max(0, int(pending) - int(mined))

    # --- store bookkeeping --------------------------------------------------------------
    def _reconcile_statuses(self, count: int) -> None:
        """Mark what the log holds as confirmed; what it lost (a reset chain) as pending."""
        now = _now_ms()
        with self.store.transaction("the outbox statuses") as conn:
            conn.execute(
                "UPDATE decisions SET status = 'confirmed', last_error = NULL, updated_ms = ? "
                "WHERE seq < ? AND status != 'confirmed'",
                [now, count],
            )
            conn.execute(
                "UPDATE decisions SET status = 'pending', tx_hash = NULL, block_number = NULL, "
                "updated_ms = ? WHERE seq >= ? AND status = 'confirmed'",
                [now, count],
            )

    def _mark(
        self,
        seqs: Sequence[int],
        status: str,
        *,
        attempts: int = 0,
        error: str | None = None,
        tx_hash: str | None = None,
        block_number: int | None = None,
    ) -> None:
        with self.store.transaction(f"the outbox status of decisions {seqs[0]}-{seqs[-1]}") as conn:
            conn.execute(
                "UPDATE decisions SET status = ?, attempts = attempts + ?, last_error = ?, "
                "tx_hash = ?, block_number = ?, updated_ms = ? WHERE seq BETWEEN ? AND ?",
                [status, attempts, error, tx_hash, block_number, _now_ms(), seqs[0], seqs[-1]],
            )

    # --- retry state --------------------------------------------------------------------
    def _failed(self, error: ChainError) -> None:
        self._failures += 1
        delay = min(self.backoff_s * 2 ** (self._failures - 1), self.max_backoff_s)
        self._retry_at = self._clock() + delay

    def _succeeded(self) -> None:
        self._failures = 0
        self._retry_at = 0.0

    def _report(self, attempts: int, error: str | None) -> FlushReport:
        return FlushReport(
            sent=self._sent,
            transactions=self._transactions,
            onchain=self._onchain[0],
            pending=unconfirmed_count(self.store),
            head=self._onchain[1],
            attempts=attempts,
            error=error,
        )


def _logged_batch(event: Any) -> tuple[int, str, list[str]]:
    """(first seq, head before, hashes) of a DecisionsRecorded event."""
    args = event["args"]
    hashes = ["0x" + bytes(h).hex() for h in args["decisionHashes"]]
    return int(args["firstSeq"]), "0x" + bytes(args["prevHead"]).hex(), hashes


def _stored(row: Sequence[Any]) -> StoredDecision:
    seq, hash_, record, status, tx_hash, block, attempts, error = row
    return StoredDecision(
        int(seq),
        str(hash_),
        str(record),
        str(status),
        tx_hash,
        None if block is None else int(block),
        int(attempts),
        error,
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
