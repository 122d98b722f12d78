"""The service's own tables: what it decided per bar, what it did on each chain, its jobs.

`service_ticks` is the intent log: a bar's row is written ('intent', with the whole decision
and its pool outcome) before the decision joins the audit trail or anything touches the chain,
and its primary key (market, bar open time) makes a second decision for the same bar
impossible. Every write here is one SQLite transaction; values are JSON documents with exact
integers (token amounts exceed 64 bits, which JSON integers in Python keep exactly).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import StoreError
from agent.service.decision import BarOutcome
from agent.store import BusyCallback, Store

INTENT, DECIDED, SKIPPED = "intent", "decided", "skipped"
"""Tick status: recorded before acting; in the audit trail (`seq`); not decided (`reason`)."""


def now_ms() -> int:
    """Return the wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def open_shared_store(path: Path | str, *, on_busy: BusyCallback | None = None) -> Store:
    """Open the store with one connection the service's threads may share.

    The service serialises every use of it with its own lock (the scheduler's job threads and
    the start-up thread differ), so SQLite's same-thread check is turned off; everything else
    (WAL, busy timeout, autocommit with explicit transactions, migrations) is the Store's.
    A write that finds the database busy (another command writing) waits and retries for up
    to `BUSY_RETRY_S` (telling `on_busy` each time) instead of failing the service.
    """
    return Store(path, check_same_thread=False, on_busy=on_busy)


@contextmanager
def writing(store: Store, what: str) -> Iterator[sqlite3.Connection]:
    """Run a write transaction, turning SQLite failures (a full disk) into StoreError.

    A busy database is waited for (`Store.transaction`); only when it stays locked for
    `BUSY_RETRY_S` does the write fail, with StoreError.
    """
    try:
        with store.transaction(what) as conn:
            yield conn
    except sqlite3.Error as e:
        raise StoreError(f"cannot record {what} in {store.path}: {root_cause(e)}") from e


def root_cause(error: BaseException) -> BaseException:
    """Return the SQLite error behind a failed ROLLBACK.

    SQLite rolls back by itself on some errors (a full disk); the store's own ROLLBACK then
    fails with "no transaction is active", which would hide the reason.
    """
    context = error.__context__
    if "no transaction is active" in str(error) and isinstance(context, sqlite3.Error):
        return context
    return error


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- named state documents --------------------------------------------------------------------
def get_state(store: Store, key: str) -> dict[str, Any] | None:
    """Return the JSON document stored under `key`, or None."""
    row = store.db.execute("SELECT value FROM service_state WHERE key = ?", [key]).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def put_state(store: Store, key: str, value: dict[str, Any]) -> None:
    """Store (replace) the JSON document under `key`."""
    with writing(store, f"the service state {key!r}") as conn:
        conn.execute(
            "INSERT OR REPLACE INTO service_state (key, value, updated_ms) VALUES (?, ?, ?)",
            [key, _dumps(value), now_ms()],
        )


# --- ticks ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TickRow:
    """One bar the service handled.

    Attributes:
        market: the series decided on (`source:symbol:timeframe`).
        bar_time_ms: the bar's open time: the idempotency key.
        status: 'intent', 'decided' or 'skipped'.
        seq: the decision's sequence number in the audit trail, once decided.
        reason: why a skipped bar was not decided.
        outcome: the decision and its pool outcome (None for a skipped bar).
        created_ms: when the row was written.
    """

    market: str
    bar_time_ms: int
    status: str
    seq: int | None
    reason: str | None
    outcome: BarOutcome | None
    created_ms: int


_TICK_COLUMNS = "market, bar_time_ms, status, seq, reason, outcome, created_ms"


def _tick(row: Any) -> TickRow:
    market, bar, status, seq, reason, outcome, created = row
    return TickRow(
        str(market),
        int(bar),
        str(status),
        None if seq is None else int(seq),
        reason,
        None if outcome is None else BarOutcome.from_json_data(json.loads(outcome)),
        int(created),
    )


def record_intent(store: Store, market: str, bar_time_ms: int, outcome: BarOutcome) -> None:
    """Write a bar's decision before acting on it.

    Raises:
        StoreError: the bar already has a row (it was decided or skipped before), or SQLite
            failed.
    """
    now = now_ms()
    with writing(store, f"the decision of bar {bar_time_ms}") as conn:
        conn.execute(
            f"INSERT INTO service_ticks ({_TICK_COLUMNS}, updated_ms) "
            "VALUES (?, ?, 'intent', NULL, NULL, ?, ?, ?)",
            [market, bar_time_ms, _dumps(outcome.to_json_data()), now, now],
        )


def mark_decided(store: Store, market: str, bar_time_ms: int, seq: int) -> None:
    """Note that a bar's decision is the audit trail's record `seq`."""
    with writing(store, f"the decision of bar {bar_time_ms}") as conn:
        conn.execute(
            "UPDATE service_ticks SET status = 'decided', seq = ?, updated_ms = ? "
            "WHERE market = ? AND bar_time_ms = ?",
            [seq, now_ms(), market, bar_time_ms],
        )


def record_skip(store: Store, market: str, bar_time_ms: int, reason: str) -> bool:
    """Record that a bar will not be decided; return False if the bar already had a row."""
    now = now_ms()
    with writing(store, f"the skip of bar {bar_time_ms}") as conn:
        cursor = conn.execute(
            f"INSERT OR IGNORE INTO service_ticks ({_TICK_COLUMNS}, updated_ms) "
            "VALUES (?, ?, 'skipped', NULL, ?, NULL, ?, ?)",
            [market, bar_time_ms, reason, now, now],
        )
    return cursor.rowcount > 0


def last_tick(store: Store, market: str) -> TickRow | None:
    """Return the newest bar handled (decided or skipped), or None."""
    row = store.db.execute(
        f"SELECT {_TICK_COLUMNS} FROM service_ticks WHERE market = ? "
        "ORDER BY bar_time_ms DESC LIMIT 1",
        [market],
    ).fetchone()
    return None if row is None else _tick(row)


def last_decision(store: Store, market: str) -> TickRow | None:
    """Return the newest bar with a decision ('intent' or 'decided'), or None."""
    row = store.db.execute(
        f"SELECT {_TICK_COLUMNS} FROM service_ticks WHERE market = ? AND status != 'skipped' "
        "ORDER BY bar_time_ms DESC LIMIT 1",
        [market],
    ).fetchone()
    return None if row is None else _tick(row)


def intents(store: Store, market: str) -> list[TickRow]:
    """Return the bars whose decision is recorded but not yet in the audit trail."""
    rows = store.db.execute(
        f"SELECT {_TICK_COLUMNS} FROM service_ticks WHERE market = ? AND status = 'intent' "
        "ORDER BY bar_time_ms",
        [market],
    ).fetchall()
    return [_tick(r) for r in rows]


def decisions_after(
    store: Store, market: str, after_ms: int | None, limit: int | None = None
) -> list[TickRow]:
    """Return decided bars (and intents) after `after_ms`, oldest first."""
    rows = store.db.execute(
        f"SELECT {_TICK_COLUMNS} FROM service_ticks WHERE market = ? AND status != 'skipped' "
        "AND bar_time_ms > ? ORDER BY bar_time_ms LIMIT ?",
        [market, -(2**62) if after_ms is None else after_ms, -1 if limit is None else limit],
    ).fetchall()
    return [_tick(r) for r in rows]


def decisions_until(store: Store, market: str, until_ms: int, limit: int) -> list[TickRow]:
    """Return up to `limit` decided bars (and intents) at or before `until_ms`, newest first."""
    rows = store.db.execute(
        f"SELECT {_TICK_COLUMNS} FROM service_ticks WHERE market = ? AND status != 'skipped' "
        "AND bar_time_ms <= ? ORDER BY bar_time_ms DESC LIMIT ?",
        [market, until_ms, limit],
    ).fetchall()
    return [_tick(r) for r in rows]


def count_decisions_after(store: Store, market: str, after_ms: int | None) -> int:
    """Return how many decided bars lie after `after_ms` (all of them when None)."""
    row = store.db.execute(
        "SELECT COUNT(*) FROM service_ticks WHERE market = ? AND status != 'skipped' "
        "AND bar_time_ms > ?",
        [market, -(2**62) if after_ms is None else after_ms],
    ).fetchone()
    return int(row[0])


def count_candles(store: Store, key: Any) -> int:
    """Return how many candles a series holds."""
    row = store.db.execute(
        "SELECT COUNT(*) FROM candles WHERE source = ? AND symbol = ? AND timeframe = ?",
        [key.source, key.symbol, key.timeframe],
    ).fetchone()
    return int(row[0])


def tick_counts(store: Store, market: str) -> dict[str, int]:
    """Return how many bars were decided (`decided`, intents included), skipped and traded.

    Read from the counts that triggers keep as ticks are written (`agent.migrations`), so a
    long service's outcomes are not parsed.
    """
    row = store.db.execute(
        "SELECT decided, skipped, trades FROM service_tick_counts WHERE market = ?", [market]
    ).fetchone()
    decided, skipped, trades = (0, 0, 0) if row is None else row
    return {"decided": int(decided), "skipped": int(skipped), "trades": int(trades)}


def recent_skips(store: Store, market: str, limit: int = 5) -> list[TickRow]:
    """Return the newest skipped bars, newest first."""
    rows = store.db.execute(
        f"SELECT {_TICK_COLUMNS} FROM service_ticks WHERE market = ? AND status = 'skipped' "
        "ORDER BY bar_time_ms DESC LIMIT ?",
        [market, limit],
    ).fetchall()
    return [_tick(r) for r in rows]


# --- chains -----------------------------------------------------------------------------------
def chain_genesis(store: Store, chain_key: str) -> tuple[dict[str, Any], int | None] | None:
    """Return (genesis, last replicated bar) recorded for a chain, or None."""
    row = store.db.execute(
        "SELECT genesis, synced_bar_ms FROM service_chains WHERE chain_key = ?", [chain_key]
    ).fetchone()
    if row is None:
        return None
    return dict(json.loads(row[0])), None if row[1] is None else int(row[1])


def put_chain_genesis(store: Store, chain_key: str, genesis: dict[str, Any]) -> None:
    """Record what a chain held before the service first acted on it (once per chain)."""
    now = now_ms()
    with writing(store, f"the genesis of chain {chain_key}") as conn:
        conn.execute(
            "INSERT OR IGNORE INTO service_chains (chain_key, genesis, synced_bar_ms, created_ms, "
            "updated_ms) VALUES (?, ?, NULL, ?, ?)",
            [chain_key, _dumps(genesis), now, now],
        )


EXECUTED, FAILED = "done", "failed"
"""Execution status: the bar is replicated on the chain; its last attempt reverted (`error`)."""

_EXECUTION_COLUMNS = (
    "chain_key, bar_time_ms, arbitrage_tx, swap_tx, gas_used, created_ms, status, attempts, error"
)


def _failed_before(conn: sqlite3.Connection, chain_key: str, bar_time_ms: int) -> Any:
    """Return (arbitrage_tx, gas_used, attempts, error) of a bar's failed row, or None."""
    return conn.execute(
        "SELECT arbitrage_tx, gas_used, attempts, error FROM service_executions "
        "WHERE chain_key = ? AND bar_time_ms = ? AND status = 'failed'",
        [chain_key, bar_time_ms],
    ).fetchone()


def record_execution(
    store: Store,
    chain_key: str,
    bar_time_ms: int,
    *,
    arbitrage_tx: str | None,
    swap_tx: str | None,
    gas_used: int,
) -> None:
    """Record that a bar is replicated on a chain (its transactions, when this run sent them).

    A bar that failed before keeps its count of attempts and its last error, and the
    arbitrage an earlier attempt sent.
    """
    now = now_ms()
    with writing(store, f"the execution of bar {bar_time_ms} on {chain_key}") as conn:
        attempts, error = 1, None
        failed = _failed_before(conn, chain_key, bar_time_ms)
        if failed is not None:
            arbitrage_tx = arbitrage_tx or failed[0]
            gas_used, attempts, error = gas_used + int(failed[1]), int(failed[2]) + 1, failed[3]
        conn.execute(
            f"INSERT OR REPLACE INTO service_executions ({_EXECUTION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, 'done', ?, ?)",
            [chain_key, bar_time_ms, arbitrage_tx, swap_tx, gas_used, now, attempts, error],
        )
        conn.execute(
            "UPDATE service_chains SET synced_bar_ms = ?, updated_ms = ? WHERE chain_key = ?",
            [bar_time_ms, now, chain_key],
        )


def record_failed_execution(
    store: Store,
    chain_key: str,
    bar_time_ms: int,
    *,
    reason: str,
    arbitrage_tx: str | None,
    gas_used: int,
) -> int:
    """Record that an attempt to replicate a bar reverted; return the attempts made so far.

    The bar stays owed to the chain (`synced_bar_ms` does not move past it); its decision
    record is untouched.
    """
    now = now_ms()
    with writing(store, f"the failed execution of bar {bar_time_ms} on {chain_key}") as conn:
        attempts = 1
        failed = _failed_before(conn, chain_key, bar_time_ms)
        if failed is not None:
            arbitrage_tx = arbitrage_tx or failed[0]
            gas_used, attempts = gas_used + int(failed[1]), int(failed[2]) + 1
        conn.execute(
            f"INSERT OR REPLACE INTO service_executions ({_EXECUTION_COLUMNS}) "
            "VALUES (?, ?, ?, NULL, ?, ?, 'failed', ?, ?)",
            [chain_key, bar_time_ms, arbitrage_tx, gas_used, now, attempts, reason[:1000]],
        )
    return attempts


def rewind_chain(store: Store, chain_key: str, synced_ms: int | None) -> None:
    """Note that a chain holds the bars only up to `synced_ms` (it lost the later ones)."""
    with writing(store, f"the replication state of {chain_key}") as conn:
        conn.execute(
            "UPDATE service_chains SET synced_bar_ms = ?, updated_ms = ? WHERE chain_key = ?",
            [synced_ms, now_ms(), chain_key],
        )


def execution(store: Store, chain_key: str, bar_time_ms: int) -> dict[str, Any] | None:
    """Return what happened to one bar on one chain (transactions, status, attempts), or None."""
    row = store.db.execute(
        "SELECT arbitrage_tx, swap_tx, gas_used, created_ms, status, attempts, error "
        "FROM service_executions WHERE chain_key = ? AND bar_time_ms = ?",
        [chain_key, bar_time_ms],
    ).fetchone()
    if row is None:
        return None
    keys = ("arbitrage_tx", "swap_tx", "gas_used", "at_ms", "status", "attempts", "error")
    return dict(zip(keys, row, strict=True))


def failed_execution(store: Store, chain_key: str) -> dict[str, Any] | None:
    """Return the bar whose execution failed on a chain and is still owed to it, or None."""
    row = store.db.execute(
        "SELECT bar_time_ms, attempts, error, created_ms FROM service_executions "
        "WHERE chain_key = ? AND status = 'failed' ORDER BY bar_time_ms LIMIT 1",
        [chain_key],
    ).fetchone()
    if row is None:
        return None
    return {"bar_time_ms": int(row[0]), "attempts": int(row[1]), "error": row[2], "at_ms": row[3]}


# --- jobs -------------------------------------------------------------------------------------
def job_run(store: Store, job: str, started_ms: int, status: str, detail: str = "") -> None:
    """Record one finished job run: `status` is 'ok', 'failed' or 'fatal'."""
    failed = int(status in ("failed", "fatal"))
    with writing(store, f"a run of job {job}") as conn:
        conn.execute(
            "INSERT INTO service_jobs (job, runs, failures, last_started_ms, last_finished_ms, "
            "last_status, last_detail) VALUES (?, 1, ?, ?, ?, ?, ?) "
            "ON CONFLICT(job) DO UPDATE SET runs = runs + 1, "
            "failures = failures + excluded.failures, "
            "last_started_ms = excluded.last_started_ms, "
            "last_finished_ms = excluded.last_finished_ms, last_status = excluded.last_status, "
            "last_detail = excluded.last_detail",
            [job, failed, started_ms, now_ms(), status, detail[:500]],
        )


def read_jobs(store: Store) -> list[dict[str, Any]]:
    """Return the last run of every job, by name."""
    rows = store.db.execute(
        "SELECT job, runs, failures, last_started_ms, last_finished_ms, last_status, "
        "last_detail FROM service_jobs ORDER BY job"
    ).fetchall()
    keys = ("job", "runs", "failures", "last_started_ms", "last_finished_ms", "status", "detail")
    return [dict(zip(keys, row, strict=True)) for row in rows]
