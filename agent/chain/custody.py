"""The chain's custody: refusing to rebuild a lost chain silently, and its status.

The embedded chain lives in its own file (`agent.chain.embedded`) and anvil's in its state file,
so the store and the chain are two records that can be compared. When the chain is lost,
replaced or corrupt, `require_chain_for_store` (an embedded file that is another chain) and
`deploy_all` (recorded contracts without their code) stop the service and the audit instead of
rebuilding the chain from the store; the one place that rebuilds it is
`agent.service.recover.recover` (`agora chain recover`), which moves the old state aside with
`move_aside` (never deleting it) and keeps the records made on the lost chain under a retired
key (`retire_chain_records`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.chain.backends import ChainBackend, EmbeddedBackend, embedded_state_dir
from agent.chain.embedded import ChainFileLock, chain_file, chain_files
from agent.chain.node import RECOVER_HINT, ChainLost
from agent.config import Settings
from agent.store import Store

PROVES = (
    "the store is self-consistent: every decision record hashes to its DecisionLog entry and "
    "links to the one before, and replaying the recorded bars gives exactly the pool reserves, "
    "balances and reward roots the records imply"
)
CANNOT_PROVE = (
    "a replayed chain proves only that the store is self-consistent (every record hashes to its "
    "entry and links to the one before); it cannot prove that these decisions were published "
    "on-chain when they were made, since the store itself wrote them onto this chain just now. "
    "Strategy registrations made on the lost chain are not replayed (submit them again)"
)
CHAIN_KEY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("deployments", "chain_key"),
    ("service_chains", "chain_key"),
    ("service_executions", "chain_key"),
    ("reward_epochs", "chain_key"),
    ("reward_allocations", "claimed_chain_key"),
    ("strategy_registrations", "chain_key"),
    ("backtest_logs", "chain_key"),
)
"""Every column that names the chain a record was made on."""


@dataclass(frozen=True)
class ChainHistory:
    """What a store says about the chains its records were sent to."""

    decisions: int
    chain_keys: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """Whether nothing was recorded yet (a fresh data directory)."""
        return self.decisions == 0 and not self.chain_keys


def chain_history(store: Store) -> ChainHistory:
    """Return the store's decision count and the chain keys it holds deployments for."""
    from agent.audit.outbox import stored_count

    rows = store.db.execute("SELECT DISTINCT chain_key FROM deployments ORDER BY chain_key")
    return ChainHistory(stored_count(store), tuple(str(r[0]) for r in rows.fetchall()))


def require_chain_for_store(backend: ChainBackend, store: Store) -> None:
    """Refuse an embedded chain file that does not hold the store's records.

    A persistent embedded chain with no deployment recorded under its key, while the store
    already holds decisions or deployments, is a chain that was lost and recreated (or
    replaced): the records would otherwise be replayed onto it silently.

    Raises:
        ChainLost: naming the chain, what the store holds and `agora chain recover`.
    """
    from agent.chain.deploy import chain_key

    if not (backend.persistent and backend.name == "embedded"):
        return
    key = chain_key(backend)
    if store.read_deployments(key):
        return
    history = chain_history(store)
    if history.empty:
        return
    where = ", ".join(history.chain_keys) or "no chain"
    raise ChainLost(
        f"the embedded chain {getattr(backend, 'state_path', None)} ({key}) does not hold this "
        f"store's records ({history.decisions} decisions; contracts recorded on {where}): the "
        f"chain file was lost or replaced; {RECOVER_HINT}"
    )


def open_embedded_for_store(state_dir: Path, store: Store) -> EmbeddedBackend:
    """Open the data directory's embedded chain; create it only for a store with no records.

    Raises:
        ChainLost: the chain file is missing or corrupt while the store holds records, or it is
            another chain than the one the records were sent to.
        ChainLocked: another process has the chain open.
    """
    backend = EmbeddedBackend(state_dir, create=chain_history(store).empty)
    try:
        require_chain_for_store(backend, store)
    except BaseException:
        backend.close()
        raise
    return backend


def retire_chain_records(store: Store, key: str, label: str) -> str:
    """Keep the records made on a lost chain under `<key>/<label>`; return that retired key.

    A rebuilt anvil chain has the same key as the lost one (`anvil:31337`): without this its
    fresh contracts, genesis and replication would be mistaken for the lost chain's. Nothing
    is deleted.
    """
    retired = f"{key}/{label}"
    with store.transaction() as conn:
        for table, column in CHAIN_KEY_COLUMNS:
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", [retired, key])
    return retired


def move_aside_file(path: Path, reason: str) -> Path | None:
    """Rename a state file to `<stem>.<reason>-<UTC time><suffix>`; None if it is missing."""
    if not path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.stem}.{reason}-{stamp}{path.suffix}")
    os.replace(path, target)
    return target


def move_aside(state_dir: Path, reason: str) -> list[Path]:
    """Rename the chain file (and its -wal/-shm) to `embedded.<reason>-<UTC time>.sqlite`.

    Holds the chain's lock while renaming, so no process has it open.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    main = chain_file(state_dir)
    target = main.with_name(f"{main.stem}.{reason}-{stamp}{main.suffix}")
    lock = ChainFileLock(state_dir)
    try:
        moved = []
        for path in chain_files(state_dir):
            destination = Path(str(target) + str(path)[len(str(main)) :])
            os.replace(path, destination)
            moved.append(destination)
        return moved
    finally:
        lock.release()


def chain_status(settings: Settings) -> dict[str, Any]:
    """Return the configured chain's backend, file, head block and recorded contracts.

    While the service runs, this is the service's chain (attached over JSON-RPC).

    Raises:
        ChainLocked: another process has the embedded chain open and does not serve it.
        ChainError: the chain cannot be opened or read.
    """
    from agent.chain.backends import connect
    from agent.chain.deploy import chain_key

    data_dir = Path(settings.data.dir)
    status: dict[str, Any] = {"backend": settings.chain.backend}
    with Store(settings.data.database_path) as store:
        if settings.chain.backend == "embedded":
            path = chain_file(embedded_state_dir(data_dir))
            sizes = [p.stat().st_size for p in chain_files(embedded_state_dir(data_dir))]
            status.update(chain_file=str(path), exists=path.exists(), size_bytes=sum(sizes))
            if not path.exists():
                status["note"] = "no chain yet" if chain_history(store).empty else RECOVER_HINT
                return status
        with connect(settings.chain, data_dir, create_chain=False) as backend:
            key = chain_key(backend)
            status.update(
                chain_key=key,
                chain_id=int(backend.w3.eth.chain_id),
                head_block=int(backend.w3.eth.block_number),
                node=backend.url or "in this process",
                contracts={n: r.address for n, r in store.read_deployments(key).items()},
            )
    return status
