"""The SQLite database, the source of truth: candles, hidden series, and (later) decisions,
trades, models, rewards and jobs.

One file in the data directory, opened through sqlite-utils in WAL mode. The schema evolves by
numbered migrations (`agent.migrations`) recorded in `schema_migrations`; a database newer than
this code is refused.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlite_utils

from agent.errors import CandleError, StoreError
from agent.market.quality import validate_candles
from agent.market.schema import CANDLE_COLUMNS, SeriesKey, format_time_ms, timeframe_ms
from agent.migrations import MIGRATIONS as MIGRATIONS  # re-exported: the schema version

BUSY_TIMEOUT_MS = 10_000
"""How long SQLite itself waits for a lock another connection holds, per attempt."""
BUSY_RETRY_S = 60.0
"""How long a write waits in all for the write lock (attempts of `BUSY_TIMEOUT_MS`, with
backoff between them) before it fails with StoreError."""
BUSY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0)
"""The pauses between attempts to take the write lock (the last one repeats)."""

BusyCallback = Callable[[str, int, float, float], None]
"""Called before each retry of a busy write with (what, attempt, waited_s, retry_in_s)."""

_log = logging.getLogger(__name__)


def is_busy(error: BaseException) -> bool:
    """Return whether a SQLite error means another connection holds the lock it needs."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return bool((code & 0xFF) == sqlite3.SQLITE_BUSY)
    return "database is locked" in str(error)


def log_busy(what: str, attempt: int, waited_s: float, retry_in_s: float) -> None:
    """The default `BusyCallback`: a warning through the standard `logging` module."""
    _log.warning(
        "the database is busy (another process holds the write lock): %s waited %.1f s, "
        "attempt %d, retrying in %.1f s",
        what,
        waited_s,
        attempt,
        retry_in_s,
    )


_CANDLE_DTYPE = np.dtype([("open_time", "int64"), *((c, "float64") for c in CANDLE_COLUMNS[1:])])


@dataclass(frozen=True)
class WriteResult:
    """What an idempotent candle write did (`first_ms`, `last_ms`: its time range, if any)."""

    received: int
    inserted: int
    unchanged: int
    replaced: int
    first_ms: int | None = None
    last_ms: int | None = None


def _compare_with_stored(
    clean: pd.DataFrame, stored: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Return, per candle, whether one is stored at its open time and whether it is identical."""
    merged = clean.merge(stored, on="open_time", how="left", suffixes=("", "_old"))
    exists = merged["open_old"].notna().to_numpy()
    same = exists.copy()
    for column in CANDLE_COLUMNS[1:]:
        same &= merged[column].to_numpy() == merged[f"{column}_old"].to_numpy()
    return exists, same


def _conflict_error(key: SeriesKey, times: np.ndarray, conflict: np.ndarray) -> CandleError:
    at = int(np.flatnonzero(conflict)[0])
    return CandleError(
        f"{key}: the candle at {format_time_ms(int(times[at]))} differs from the stored one "
        f"({int(conflict.sum())} conflicting candle(s); use replace to overwrite)",
        row=at,
    )


@dataclass(frozen=True)
class DeploymentRecord:
    """A contract Agora deployed on one chain, as recorded in the `deployments` table.

    Attributes:
        name: the contract's role in the deployment (`pool`, `decision_log`, ...).
        address: checksum address.
        code_hash: keccak256 of the runtime code found at `address` right after deploying.
        deployed_at: ISO-8601 UTC time of the recording.
    """

    name: str
    address: str
    code_hash: str
    deployed_at: str


@dataclass(frozen=True)
class SeriesSummary:
    key: SeriesKey
    count: int
    first_ms: int
    last_ms: int


class Store:
    """The Agora database. Use as a context manager, or call `close()`.

    Every write is one immediate transaction (`transaction`). While another process holds the
    write lock (a bulk import between its pages, a command beside the service), a write waits:
    SQLite retries for `busy_timeout_ms`, then the store retries with backoff, calling
    `on_busy` before each retry, until `busy_retry_s` have passed. Only the BEGIN (or the
    COMMIT) is retried, never the block, so a retry cannot write twice.

    Args:
        path: the database file (created with its directory when missing).
        busy_timeout_ms: SQLite's own wait for a lock, per attempt.
        busy_retry_s: the total wait for the write lock before a write fails (0: no retry).
        on_busy: told about each retry (the service logs a warning); `log_busy` by default.
        check_same_thread: SQLite's same-thread check (off for the service's shared
            connection, which its own lock serialises).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        busy_retry_s: float = BUSY_RETRY_S,
        on_busy: BusyCallback | None = None,
        check_same_thread: bool = True,
    ) -> None:
        self.path = Path(path)
        self.busy_retry_s = busy_retry_s
        self.on_busy: BusyCallback = log_busy if on_busy is None else on_busy
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), check_same_thread=check_same_thread)
            self.db = sqlite_utils.Database(conn)
            conn.isolation_level = None  # autocommit; transactions are explicit
            # the busy timeout first: turning a fresh file to WAL takes a lock
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._retry_busy(
                "the journal mode (WAL)", lambda: conn.execute("PRAGMA journal_mode=WAL")
            )
            conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the database {self.path}: {e}") from e
        self.migrate()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # --- schema -------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        if not self.db["schema_migrations"].exists():
            return 0
        row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> None:
        """Apply every migration this database lacks, each in its own transaction.

        The version is read again under the write lock before each migration, so processes
        opening a fresh database at once apply each migration exactly once between them.
        """
        try:
            if self.schema_version == len(MIGRATIONS):
                return
            while self._migrate_one():
                pass
        except sqlite3.Error as e:
            raise StoreError(f"cannot migrate the database {self.path}: {e}") from e

    def _migrate_one(self) -> bool:
        """Apply the next missing migration under the write lock; False when none is missing."""
        with self.transaction("the schema migration") as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            current = self.schema_version
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {current}, newer than this Agora "
                    f"({len(MIGRATIONS)}); upgrade Agora"
                )
            if current == len(MIGRATIONS):
                return False
            migration = MIGRATIONS[current]
            migration(self.db)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                [current + 1, migration.__name__.lstrip("_")],
            )
        return True

    @contextmanager
    def transaction(self, what: str = "a write") -> Iterator[sqlite3.Connection]:
        """Run a block in one immediate transaction: all of it is written, or none.

        Taking the write lock waits while another process holds it (see the class); `what`
        names the write in the busy warnings and errors.

        Raises:
            StoreError: the lock stayed taken for `busy_retry_s`, or the commit failed.
        """
        conn = self.db.conn
        self._retry_busy(what, lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O)
                conn.execute("ROLLBACK")
            raise
        else:
            try:
                self._retry_busy(what, lambda: conn.execute("COMMIT"))
            except (sqlite3.Error, StoreError) as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, StoreError):
                    raise
                raise StoreError(f"cannot commit to {self.path}: {e}") from e

    def _retry_busy(self, what: str, statement: Callable[[], object]) -> None:
        """Run a statement that takes a lock, retrying with backoff while the database is busy.

        Only BEGIN, COMMIT and the journal mode go through here: a busy error leaves nothing
        half-done, so running them again cannot write twice.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                statement()
                return
            except sqlite3.OperationalError as e:
                if not is_busy(e):
                    raise
                attempt += 1
                waited = time.monotonic() - started
                pause = BUSY_BACKOFF_S[min(attempt, len(BUSY_BACKOFF_S)) - 1]
                if waited + pause > self.busy_retry_s:
                    raise StoreError(
                        f"cannot write {what} to {self.path}: the database stayed locked by "
                        f"another process for {waited:.0f} s ({e})"
                    ) from e
                self.on_busy(what, attempt, waited, pause)
                time.sleep(pause)

    # --- candles ------------------------------------------------------------------------
    def write_candles(
        self, key: SeriesKey, candles: pd.DataFrame, *, replace: bool = False, validate: bool = True
    ) -> WriteResult:
        """Validate and upsert a candle batch in one transaction.

        Identical candles already stored are left alone. A candle that conflicts with the
        stored one for the same open time is refused (the whole batch with it) unless
        `replace` is set. A refused batch writes nothing. A large import is written in pages,
        each through this method (`agent.market.sources.ingest`), so that the write lock is
        never held for long.
        """
        tf_ms = timeframe_ms(key.timeframe)
        clean = validate_candles(candles, tf_ms) if validate else candles
        if clean.empty:
            return WriteResult(0, 0, 0, 0)
        times = clean["open_time"].to_numpy(dtype="int64")
        try:
            with self.transaction(f"candles of {key}") as conn:
                stored = self.read_candles(key, start_ms=int(times[0]), end_ms=int(times[-1]))
                exists, same = _compare_with_stored(clean, stored)
                conflict = exists & ~same
                if conflict.any() and not replace:
                    raise _conflict_error(key, times, conflict)
                todo = clean[~same]
                rows = [
                    (key.source, key.symbol, key.timeframe, int(t), o, h, lo, c, v)
                    for t, o, h, lo, c, v in todo.itertuples(index=False, name=None)
                ]
                conn.executemany(
                    "INSERT OR REPLACE INTO candles "
                    "(source, symbol, timeframe, open_time, open, high, low, close, volume) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as e:
            raise StoreError(f"cannot write candles for {key} to {self.path}: {e}") from e
        return WriteResult(
            received=len(candles),
            inserted=int((~exists).sum()),
            unchanged=int(same.sum()),
            replaced=int(conflict.sum()),
            first_ms=int(times[0]),
            last_ms=int(times[-1]),
        )

    def refuse_conflicts(
        self, key: SeriesKey, candles: pd.DataFrame, *, page_rows: int = 50_000
    ) -> None:
        """Raise CandleError if a candle differs from the one stored at its open time.

        Read-only, page by page: a bulk writer checks its whole input with it before writing
        its first page, so that a conflict refuses everything.

        Args:
            key: the series.
            candles: validated candles (sorted by open time, unique).
            page_rows: candles compared per read.
        """
        first: tuple[int, int] | None = None  # (position, open time) of the first conflict
        count = 0
        for at in range(0, len(candles), page_rows):
            page = candles.iloc[at : at + page_rows]
            times = page["open_time"].to_numpy(dtype="int64")
            stored = self.read_candles(key, start_ms=int(times[0]), end_ms=int(times[-1]))
            if stored.empty:
                continue
            exists, same = _compare_with_stored(page, stored)
            conflict = exists & ~same
            if conflict.any() and first is None:
                position = int(np.flatnonzero(conflict)[0])
                first = (at + position, int(times[position]))
            count += int(conflict.sum())
        if first is not None:
            raise CandleError(
                f"{key}: the candle at {format_time_ms(first[1])} differs from the stored one "
                f"({count} conflicting candle(s); use replace to overwrite); nothing was written",
                row=first[0],
            )

    def read_candles(
        self, key: SeriesKey, *, start_ms: int | None = None, end_ms: int | None = None
    ) -> pd.DataFrame:
        """Return the stored candles of a series in time order, optionally within [start, end]."""
        sql = (
            "SELECT open_time, open, high, low, close, volume FROM candles "
            "WHERE source = ? AND symbol = ? AND timeframe = ?"
        )
        params: list[object] = [key.source, key.symbol, key.timeframe]
        if start_ms is not None:
            sql += " AND open_time >= ?"
            params.append(start_ms)
        if end_ms is not None:
            sql += " AND open_time <= ?"
            params.append(end_ms)
        cursor = self.db.execute(sql + " ORDER BY open_time", params)
        rows = np.fromiter(cursor, dtype=_CANDLE_DTYPE)  # no list of tuples: a long series
        return pd.DataFrame({column: rows[column] for column in CANDLE_COLUMNS})

    def last_open_time(self, key: SeriesKey) -> int | None:
        """Return the newest stored open time of a series, or None if it is empty."""
        return self._open_time_bound(key, "MAX", None)

    def first_open_time(self, key: SeriesKey, *, start_ms: int | None = None) -> int | None:
        """Return the oldest stored open time of a series at or after `start_ms`."""
        return self._open_time_bound(key, "MIN", start_ms)

    def _open_time_bound(self, key: SeriesKey, aggregate: str, start_ms: int | None) -> int | None:
        row = self.db.execute(
            f"SELECT {aggregate}(open_time) FROM candles "
            "WHERE source = ? AND symbol = ? AND timeframe = ? AND open_time >= ?",
            [key.source, key.symbol, key.timeframe, -(2**62) if start_ms is None else start_ms],
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def list_series(self) -> list[SeriesSummary]:
        rows = self.db.execute(
            "SELECT source, symbol, timeframe, COUNT(*), MIN(open_time), MAX(open_time) "
            "FROM candles GROUP BY source, symbol, timeframe ORDER BY source, symbol, timeframe"
        ).fetchall()
        return [
            SeriesSummary(SeriesKey(s, y, t), int(n), int(a), int(b)) for s, y, t, n, a, b in rows
        ]

    def delete_series(self, key: SeriesKey) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM candles WHERE source = ? AND symbol = ? AND timeframe = ?",
                [key.source, key.symbol, key.timeframe],
            )
            conn.execute(
                "DELETE FROM hidden_series WHERE source = ? AND symbol = ? AND timeframe = ?",
                [key.source, key.symbol, key.timeframe],
            )
        return int(cursor.rowcount)

    # --- deployments (contract addresses per chain) --------------------------------------
    def read_deployments(self, chain_key: str) -> dict[str, DeploymentRecord]:
        """Return the contracts recorded for a chain, by name (empty for an unknown chain)."""
        rows = self.db.execute(
            "SELECT name, address, code_hash, deployed_at FROM deployments WHERE chain_key = ? "
            "ORDER BY name",
            [chain_key],
        ).fetchall()
        return {row[0]: DeploymentRecord(*row) for row in rows}

    def write_deployments(
        self, chain_key: str, records: Iterable[DeploymentRecord], *, replace_all: bool = False
    ) -> None:
        """Record contracts for a chain in one transaction, replacing records of the same name.

        With `replace_all`, every earlier record of the chain is dropped first, so the chain's
        records are exactly `records`.
        """
        rows = [(chain_key, r.name, r.address, r.code_hash, r.deployed_at) for r in records]
        try:
            with self.transaction() as conn:
                if replace_all:
                    conn.execute("DELETE FROM deployments WHERE chain_key = ?", [chain_key])
                conn.executemany(
                    "INSERT OR REPLACE INTO deployments "
                    "(chain_key, name, address, code_hash, deployed_at) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as e:
            raise StoreError(
                f"cannot record deployments for {chain_key} in {self.path}: {e}"
            ) from e

    def deployment_chain_keys(self) -> list[str]:
        """Return the chains that have recorded deployments, sorted."""
        rows = self.db.execute("SELECT DISTINCT chain_key FROM deployments ORDER BY 1").fetchall()
        return [str(row[0]) for row in rows]

    def delete_deployments(self, chain_key: str) -> int:
        """Forget every contract recorded for a chain; return how many records were dropped."""
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM deployments WHERE chain_key = ?", [chain_key])
        return int(cursor.rowcount)

    # --- hidden series (the synthetic market's planted component) -------------------------
    def write_hidden_series(
        self, key: SeriesKey, name: str, open_times: np.ndarray, values: np.ndarray
    ) -> None:
        """Store a named per-bar series next to a candle series (replacing stored values)."""
        rows = [
            (key.source, key.symbol, key.timeframe, name, int(t), float(v))
            for t, v in zip(open_times, values, strict=True)
        ]
        try:
            with self.transaction(f"the {name} series of {key}") as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO hidden_series "
                    "(source, symbol, timeframe, name, open_time, value) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as e:
            raise StoreError(f"cannot write the {name} series of {key} to {self.path}: {e}") from e

    def read_hidden_series(self, key: SeriesKey, name: str) -> pd.Series:
        rows = self.db.execute(
            "SELECT open_time, value FROM hidden_series WHERE source = ? AND symbol = ? "
            "AND timeframe = ? AND name = ? ORDER BY open_time",
            [key.source, key.symbol, key.timeframe, name],
        ).fetchall()
        index = pd.Index([r[0] for r in rows], dtype="int64", name="open_time")
        return pd.Series([r[1] for r in rows], index=index, dtype="float64", name=name)
