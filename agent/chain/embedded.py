"""The embedded chain's state file: py-evm over a SQLite key-value table, one process at a time.

py-evm keeps a chain in any bytes -> bytes mapping. `SqliteKeyValueDB` is that mapping over one
SQLite table (`kv`, WAL). Writes are buffered in memory and committed in one SQLite transaction
each time a block is mined (eth-tester mines one block per transaction), so the file always
holds the chain as of its last mined block: a process killed between (or during) transactions
leaves the last committed block, never a half-written one. `open_chain_file` takes an exclusive
`flock` on a lock file beside the chain for as long as the chain is open, then either reopens
the existing chain (its genesis, head, state and nonces) or creates a genesis block; the funded
accounts are eth-tester's deterministic ones (private keys 1..10) in every process.

Both embedded chains (in a file or in memory) run `indexed_backend_class()`: eth-tester's
backend with transactions and receipts found through py-evm's hash index instead of a scan
back from the newest block, so `eth_getLogs` over a long chain costs time linear in the blocks
read, not quadratic in the chain's length.

While a process holds the chain (the service), it may serve it to other processes over JSON-RPC
on loopback (`agent.chain.serve`); they attach to it (`agent.chain.backends.connect`) instead of
opening the file, so only the holder ever writes it.

ChainError
├── ChainLocked   another process has the chain open   (both defined in `agent.chain.node`)
└── ChainLost     the chain file is missing or corrupt while the store expects it
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

from eth.db.backends.base import BaseDB

from agent.chain.node import RECOVER_HINT, ChainLocked, ChainLost, NodeLock
from agent.errors import ChainError

CHAIN_FILE = "embedded.sqlite"
LOCK_FILE = "embedded.lock"
CHAIN_ID = 131277322940537
"""eth-tester's chain id, kept so contracts and signatures behave as on the in-memory chain."""
__all__ = ["RECOVER_HINT", "ChainFile", "ChainFileLock", "ChainLocked", "ChainLost"]


def chain_file(state_dir: Path) -> Path:
    """Return the embedded chain's state file in `state_dir` (`data/chain/embedded.sqlite`)."""
    return Path(state_dir) / CHAIN_FILE


def chain_files(state_dir: Path) -> list[Path]:
    """Return the chain file and its SQLite companions (-wal, -shm) that exist."""
    main = chain_file(state_dir)
    return [p for p in (main, Path(f"{main}-wal"), Path(f"{main}-shm")) if p.exists()]


class SqliteKeyValueDB(BaseDB):
    """A py-evm `BaseDB` over one SQLite table; writes become durable at `commit`.

    Uncommitted writes live in memory (and are visible to reads); `commit` writes them in one
    transaction, `rollback` drops them. One process at a time (see `ChainFileLock`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._pending: dict[bytes, bytes | None] = {}
        try:
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
            )
        except sqlite3.DatabaseError as e:
            raise ChainLost(
                f"the embedded chain file {path} is corrupt ({e}); {RECOVER_HINT}"
            ) from e

    def _read(self, key: bytes) -> bytes | None:
        with self._lock:
            if key in self._pending:
                return self._pending[key]
            try:
                row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            except sqlite3.DatabaseError as e:
                raise ChainError(f"reading the embedded chain file {self.path} failed: {e}") from e
            return None if row is None else bytes(row[0])

    def __getitem__(self, key: bytes) -> bytes:
        value = self._read(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._pending[bytes(key)] = bytes(value)

    def __delitem__(self, key: bytes) -> None:
        with self._lock:
            if self._read(key) is None:
                raise KeyError(key)
            self._pending[bytes(key)] = None

    def _exists(self, key: bytes) -> bool:
        return self._read(key) is not None

    def commit(self) -> None:
        """Write every buffered change in one SQLite transaction."""
        with self._lock:
            if not self._pending:
                return
            puts = [(k, v) for k, v in self._pending.items() if v is not None]
            deletes = [(k,) for k, v in self._pending.items() if v is None]
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", puts)
                self._conn.executemany("DELETE FROM kv WHERE k = ?", deletes)
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                with contextlib.suppress(sqlite3.DatabaseError):
                    self._conn.execute("ROLLBACK")
                raise ChainError(f"writing the embedded chain file {self.path} failed: {e}") from e
            self._pending.clear()

    def rollback(self) -> None:
        """Drop the buffered changes (the pending block's state)."""
        with self._lock:
            self._pending.clear()

    def close(self) -> None:
        with self._lock:
            self._pending.clear()
            self._conn.close()


class ChainFileLock(NodeLock):
    """An exclusive `flock` on the lock file beside the chain, with the holder's pid in it."""

    def __init__(self, state_dir: Path, *, timeout_s: float = 3.0) -> None:
        try:
            super().__init__(Path(state_dir) / LOCK_FILE, timeout_s=timeout_s)
        except ChainLocked as e:
            holder = str(e).rsplit(" is in use by ", 1)[-1]
            raise ChainLocked(
                f"the embedded chain in {state_dir} is in use by {holder}; stop it or use "
                "chain.backend: anvil"
            ) from None


class ChainFile:
    """An open embedded chain file: the lock, the key-value store and eth-tester's backend."""

    def __init__(self, state_dir: Path, *, create: bool = True, lock_timeout_s: float = 3.0):
        self.state_dir = Path(state_dir)
        self.path = chain_file(self.state_dir)
        if not self.path.exists() and not create:
            raise ChainLost(
                f"there is no embedded chain file {self.path}, but the store's records live on "
                f"it; {RECOVER_HINT}"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = ChainFileLock(self.state_dir, timeout_s=lock_timeout_s)
        try:
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            if fresh and not create:
                raise ChainLost(f"the embedded chain file {self.path} is empty; {RECOVER_HINT}")
            self.db = SqliteKeyValueDB(self.path)
            try:
                self.backend = _open_backend(self.db, fresh=fresh)
            except ChainError:
                self.db.close()
                raise
        except BaseException:
            self.lock.release()
            raise
        self.created = fresh

    def close(self) -> None:
        """Close the file (dropping the pending block) and release the lock."""
        if self.lock is not None:
            self.db.close()
            self.lock.release()
            self.lock = None  # type: ignore[assignment]


def _open_backend(db: SqliteKeyValueDB, *, fresh: bool) -> Any:
    from eth.db.atomic import AtomicDB
    from eth.exceptions import CanonicalHeadNotFound, HeaderNotFound
    from eth_tester.backends.pyevm.main import (
        generate_genesis_state_for_keys,
        get_default_account_keys,
        get_default_genesis_params,
    )

    keys = get_default_account_keys(quantity=10)
    chain_class = _chain_class()
    base_db = AtomicDB(db)
    if fresh:
        genesis_state = generate_genesis_state_for_keys(keys)
        chain = chain_class.from_genesis(base_db, get_default_genesis_params(), genesis_state)
        db.commit()
    else:
        try:
            chain = chain_class(base_db)
            chain.get_canonical_block_by_number(0)
        except (CanonicalHeadNotFound, HeaderNotFound, KeyError, ValueError) as e:
            raise ChainLost(
                f"the embedded chain file {db.path} holds no readable chain ({type(e).__name__}: "
                f"{e}); {RECOVER_HINT}"
            ) from e
    return _backend_class()(chain, keys, db)


_CLASSES: dict[str, Any] = {}


def _chain_class() -> Any:
    """Return eth-tester's post-merge tester chain (Prague from genesis, constant gas limit)."""
    if "chain" not in _CLASSES:
        from eth.chains.base import MiningChain
        from eth.vm.forks import PragueVM
        from eth_utils.toolz import assoc

        class EmbeddedTesterChain(MiningChain):
            chain_id = CHAIN_ID
            vm_configuration = ((0, PragueVM),)  # type: ignore[assignment]

            def create_header_from_parent(self, parent_header: Any, **header_params: Any) -> Any:
                return super().create_header_from_parent(
                    parent_header, **assoc(header_params, "gas_limit", parent_header.gas_limit)
                )

            def get_transaction_builder(self) -> Any:
                return super().get_vm().get_transaction_builder()

        _CLASSES["chain"] = EmbeddedTesterChain
    return _CLASSES["chain"]


def indexed_backend_class() -> Any:
    """Return eth-tester's PyEVMBackend finding mined transactions by py-evm's hash index.

    eth-tester finds a transaction (for its receipt, and so for every log `eth_getLogs`
    returns) by decoding blocks back from the newest one until it meets it: reading a chain's
    logs costs time quadratic in its length. py-evm keeps a lookup from transaction hash to
    (block number, index) for the canonical chain; this backend asks it first and checks the
    answer against the block (a snapshot revert can leave the lookup stale), falling back to
    eth-tester's scan when the lookup has no answer, so results are exactly eth-tester's.
    """
    if "indexed" not in _CLASSES:
        from eth.exceptions import HeaderNotFound
        from eth.exceptions import TransactionNotFound as EVMTransactionNotFound
        from eth_tester import PyEVMBackend
        from eth_tester.backends.pyevm.main import _get_transaction_by_hash as scan_for
        from eth_tester.backends.pyevm.serializers import (
            serialize_transaction,
            serialize_transaction_receipt,
        )

        class IndexedPyEVMBackend(PyEVMBackend):
            def _find_transaction(self, transaction_hash: bytes) -> tuple[Any, Any, int]:
                """Return (block, transaction, index) as eth-tester's `_get_transaction_by_hash`."""
                chain = self.chain
                pending = chain.get_block()
                for index, transaction in enumerate(pending.transactions):
                    if transaction.hash == transaction_hash:
                        return pending, transaction, index
                try:
                    number, index = chain.chaindb.get_transaction_index(transaction_hash)
                    if number < pending.number:
                        block = chain.get_canonical_block_by_number(number)
                        found = (
                            block.transactions[index] if index < len(block.transactions) else None
                        )
                        if found is not None and found.hash == transaction_hash:
                            return block, found, index
                except (EVMTransactionNotFound, HeaderNotFound):
                    pass
                return scan_for(chain, transaction_hash)

            def get_transaction_by_hash(self, transaction_hash: bytes) -> Any:
                block, transaction, index = self._find_transaction(transaction_hash)
                is_pending = block.number == self.chain.get_block().number
                return serialize_transaction(block, transaction, index, is_pending)

            def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
                block, transaction, index = self._find_transaction(transaction_hash)
                is_pending = block.number == self.chain.get_block().number
                receipts = block.get_receipts(self.chain.chaindb)
                return serialize_transaction_receipt(
                    block, receipts, transaction, index, is_pending, self.chain.get_vm()
                )

        _CLASSES["indexed"] = IndexedPyEVMBackend
    return _CLASSES["indexed"]


def _backend_class() -> Any:
    """Return the indexed PyEVMBackend over a given chain, committing each mined block."""
    if "backend" not in _CLASSES:

        class FileBackedPyEVMBackend(indexed_backend_class()):  # type: ignore[misc]
            def __init__(self, chain: Any, account_keys: Any, db: SqliteKeyValueDB) -> None:
                # PyEVMBackend.__init__ would build a new genesis: adopt the opened chain.
                self.chain = chain
                self.account_keys = account_keys
                self._file_db = db

            def mine_blocks(self, num_blocks: int = 1, coinbase: Any = None) -> Any:
                kwargs = {} if coinbase is None else {"coinbase": coinbase}
                hashes = super().mine_blocks(num_blocks, **kwargs)
                self._file_db.commit()
                return hashes

            def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
                raise ChainError("the embedded chain file cannot be reset; move it aside instead")

        _CLASSES["backend"] = FileBackedPyEVMBackend
    return _CLASSES["backend"]
