"""The audit trail facade for backtests and the service: append decisions, flush them on-chain.

`AuditTrail.append` stores a decision first (sequence number and `prev_hash` assigned in the
same SQLite transaction), then, once a batch of decisions is waiting, lets the outbox try to
send them; a chain that is down never stops the caller, the decisions wait in the store.
`flush` sends whatever is still pending (call it at the end of a run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent.audit.outbox import (
    DEFAULT_BATCH_SIZE,
    DecisionOutbox,
    FlushReport,
    append_decision,
    stored_count,
    unconfirmed_count,
)
from agent.audit.record import DecisionFields, DecisionRecord
from agent.chain.backends import ChainBackend
from agent.config import Settings
from agent.errors import AuditError
from agent.store import Store


class AuditTrail:
    """Append-only decision trail over the store, optionally mirrored to a DecisionLog.

    Args:
        store: the database (decisions table).
        outbox: sends stored decisions to the DecisionLog; None keeps the trail off-chain
            (a later outbox on the same store sends everything).
    """

    def __init__(self, store: Store, outbox: DecisionOutbox | None = None) -> None:
        self.store = store
        self.outbox = outbox
        self._unconfirmed = unconfirmed_count(store)
        self.last_flush: FlushReport | None = None

    @classmethod
    def on_chain(
        cls,
        store: Store,
        backend: ChainBackend,
        decision_log_address: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **outbox_options: Any,
    ) -> AuditTrail:
        """Return a trail whose decisions go to the DecisionLog at `decision_log_address`.

        `outbox_options` are passed to `DecisionOutbox` (max_attempts, backoff_s, ...).
        """
        outbox = DecisionOutbox(
            store, backend, decision_log_address, batch_size=batch_size, **outbox_options
        )
        return cls(store, outbox)

    @property
    def count(self) -> int:
        """Number of decisions in the trail (the next decision's sequence number)."""
        return stored_count(self.store)

    @property
    def unconfirmed(self) -> int:
        """Decisions stored but not (yet) confirmed on-chain, as of the last send."""
        return self._unconfirmed

    def append(self, fields: DecisionFields) -> DecisionRecord:
        """Store one decision as the next record of the trail and return the record.

        Once a batch of decisions is waiting, the outbox tries once to send them; on a chain
        error they stay pending and are retried after a backoff (see `DecisionOutbox`).

        Raises:
            AuditError: the fields do not make a valid record, or the log diverged.
            TransactionReverted: sending reverted.
        """
        record = append_decision(self.store, fields)
        self._unconfirmed += 1
        if self.outbox is not None and self._unconfirmed >= self.outbox.batch_size:
            self.last_flush = self.outbox.try_flush()
            self._unconfirmed = self.last_flush.pending
        return record

    def flush(self, *, max_attempts: int | None = None) -> FlushReport | None:
        """Send every pending decision, retrying chain errors (None without an outbox).

        Raises:
            ChainError: still failing after the outbox's attempts; the decisions stay pending.
        """
        if self.outbox is None:
            return None
        self.last_flush = self.outbox.flush(max_attempts=max_attempts)
        self._unconfirmed = self.last_flush.pending
        return self.last_flush


@dataclass(frozen=True)
class LogLocation:
    """The DecisionLog a store's decisions are checked against.

    Attributes:
        address: the DecisionLog's checksum address.
        chain_key: the chain it lives on (see `agent.chain.deploy.chain_key`).
        replayed: decisions sent from the store just now (only on a chain that does not
            persist: it starts empty, so the trail is replayed onto it first).
    """

    address: str
    chain_key: str
    replayed: int = 0


def locate_decision_log(
    backend: ChainBackend,
    store: Store,
    settings: Settings,
    *,
    progress: Callable[[str], None] | None = None,
) -> LogLocation:
    """Find the DecisionLog recorded for the backend's chain, checking its code.

    A persistent chain (the embedded chain file, anvil with a state file, rpc) is never
    redeployed or replayed here: the DecisionLog recorded for it is checked as it stands, so
    the audit compares the store with a chain the store did not just write. Rebuilding a lost
    embedded chain is the explicit `agora chain recover`. A chain that does not survive
    restarts (an in-memory EVM, anvil without a state file) is fresh here: the contracts are
    deployed and the stored decisions replayed onto it (reported in `replayed`), so what is
    checked afterwards is only the store's own hash chain.

    Raises:
        AuditError: no DecisionLog is recorded for a persistent chain.
        ChainLost: the embedded chain does not hold the store's records (lost or replaced).
        ChainError: the recorded address holds other code, or the chain failed.
    """
    from agent.chain.custody import require_chain_for_store
    from agent.chain.deploy import chain_key, check_code, deploy_all

    key = chain_key(backend)
    if backend.persistent:
        require_chain_for_store(backend, store)
        record = store.read_deployments(key).get("decision_log")
        if record is None:
            raise AuditError(
                f"no DecisionLog is recorded for the chain {key} in {store.path}: nothing was "
                "logged on this chain (or pass the contract address)"
            )
        check_code(backend, key, "decision_log", record.address, record.code_hash)
        return LogLocation(record.address, key)
    if progress is not None:
        progress(
            f"{backend.name} chain is not persistent: deploying and replaying the store, which "
            "checks only the store's own hash chain"
        )
    deployment = deploy_all(backend, store, settings)
    report = DecisionOutbox(store, backend, deployment.decision_log).flush()
    return LogLocation(deployment.decision_log, key, replayed=report.sent)


@contextmanager
def open_trail(
    settings: Settings,
    store: Store,
    *,
    address: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[tuple[ChainBackend, LogLocation]]:
    """Open the configured chain and find the DecisionLog the store's decisions are checked
    against (`address`, or the one recorded for the chain: `locate_decision_log`).

    What `agora audit verify` / `show` and the dashboard's audit action open; the backend is
    closed on exit. A chain is created only when the store holds no decisions yet.

    Raises:
        UsageError: `address` is not an address.
        AuditError, ChainError: as `locate_decision_log`.
    """
    from web3 import Web3

    from agent.chain.backends import connect
    from agent.chain.deploy import chain_key
    from agent.errors import UsageError

    with connect(settings.chain, settings.data.dir, create_chain=stored_count(store) == 0) as b:
        if address is not None:
            if not Web3.is_address(address):
                raise UsageError(f"--address {address!r}: expected a 20-byte hex address")
            yield b, LogLocation(Web3.to_checksum_address(address), chain_key(b))
            return
        location = locate_decision_log(b, store, settings, progress=progress)
        if location.replayed and progress is not None:
            progress(f"replayed {location.replayed} decisions onto the fresh log")
        yield b, location
