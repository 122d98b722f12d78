from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from agent.errors import CandleError, StoreError
from agent.market.schema import SeriesKey
from agent.store import MIGRATIONS, Store

HOUR = 3_600_000
KEY = SeriesKey("synthetic", "SYN/USD", "1h")


def candles(start: int, n: int, close: float = 10.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "open_time": [(start + i) * HOUR for i in range(n)],
            "open": [close] * n,
            "high": [close + 1] * n,
            "low": [close - 1] * n,
            "close": [close] * n,
            "volume": [1.0] * n,
        }
    )


def test_database_uses_wal_and_records_migrations(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.schema_version == len(MIGRATIONS)
    with Store(tmp_path / "a.db") as again:  # re-opening applies nothing twice
        rows = again.db.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]
        assert rows == len(MIGRATIONS)


def test_newer_database_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        store.db.execute("INSERT INTO schema_migrations VALUES (999, 'future')")
    with pytest.raises(StoreError, match="schema version 999"):
        Store(tmp_path / "a.db")


def test_writes_are_idempotent_upserts(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        first = store.write_candles(KEY, candles(0, 10))
        second = store.write_candles(KEY, candles(5, 10))
        assert (first.inserted, first.unchanged) == (10, 0)
        assert (second.inserted, second.unchanged) == (5, 5)
        assert len(store.read_candles(KEY)) == 15
        assert store.last_open_time(KEY) == 14 * HOUR


def test_conflicting_candle_refuses_the_whole_batch(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        store.write_candles(KEY, candles(0, 5))
        before = store.read_candles(KEY)
        batch = pd.concat([candles(5, 3), candles(2, 1, close=20.0)], ignore_index=True)
        with pytest.raises(CandleError, match="differs from the stored one"):
            store.write_candles(KEY, batch)
        pd.testing.assert_frame_equal(store.read_candles(KEY), before)
        replaced = store.write_candles(KEY, batch, replace=True)
        assert replaced.replaced == 1
        assert store.read_candles(KEY).loc[2, "close"] == 20.0


def test_invalid_batch_writes_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        bad = candles(0, 5)
        bad.loc[4, "volume"] = -1
        with pytest.raises(CandleError):
            store.write_candles(KEY, bad)
        assert store.list_series() == []


def test_series_are_kept_apart_and_listed(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        store.write_candles(KEY, candles(0, 3))
        other = SeriesKey("csv", "SYN/USD", "1h")
        store.write_candles(other, candles(0, 2))
        listed = {(s.key, s.count) for s in store.list_series()}
        assert listed == {(KEY, 3), (other, 2)}
        assert store.delete_series(other) == 2
        assert [s.key for s in store.list_series()] == [KEY]


def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        with pytest.raises(sqlite3.IntegrityError), store.transaction() as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (100, 'x')")
            conn.execute("INSERT INTO schema_migrations VALUES (100, 'x')")
        assert store.db.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(
            MIGRATIONS
        )


def test_hidden_series_round_trips(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        store.write_hidden_series(KEY, "planted", [0, HOUR], [0.5, -0.25])
        series = store.read_hidden_series(KEY, "planted")
        assert series.index.tolist() == [0, HOUR]
        assert series.tolist() == [0.5, -0.25]


def test_unopenable_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(tmp_path / "dir.db")


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Take the write lock from another connection now and release it after `seconds`."""
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_a_write_waits_out_a_lock_held_beyond_the_busy_timeout_and_reports_each_retry(
    tmp_path: Path,
) -> None:
    retries: list[tuple[str, int]] = []
    with Store(
        tmp_path / "a.db",
        busy_timeout_ms=100,
        on_busy=lambda what, attempt, waited, pause: retries.append((what, attempt)),
    ) as store:
        holder = hold_write_lock(store.path, 0.8)
        started = time.monotonic()
        store.write_candles(KEY, candles(0, 3))
        waited = time.monotonic() - started
        holder.join()
        assert len(store.read_candles(KEY)) == 3
    assert waited >= 0.7
    assert retries and retries[0] == (f"candles of {KEY}", 1)
    assert [attempt for _, attempt in retries] == list(range(1, len(retries) + 1))


def test_a_lock_held_beyond_the_retry_budget_is_a_store_error_naming_the_wait(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "a.db", busy_timeout_ms=100, busy_retry_s=0.5) as store:
        holder = hold_write_lock(store.path, 1.5)
        with pytest.raises(StoreError, match=r"stayed locked by another process for \d+ s"):
            store.write_candles(KEY, candles(0, 3))
        holder.join()
        assert store.list_series() == []


def test_a_full_disk_is_not_retried(tmp_path: Path) -> None:
    retries: list[int] = []
    with Store(
        tmp_path / "a.db", on_busy=lambda what, attempt, waited, pause: retries.append(attempt)
    ) as store:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages}")  # no room left
        started = time.monotonic()
        with pytest.raises(StoreError, match="database or disk is full"):
            store.write_candles(KEY, candles(0, 2_000))
        assert time.monotonic() - started < 5
    assert retries == []


def test_refuse_conflicts_reads_every_page_and_names_the_first_conflict(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        store.write_candles(KEY, candles(0, 30))
        store.write_candles(KEY, candles(40, 10, close=20.0))
        store.refuse_conflicts(KEY, candles(0, 35), page_rows=7)  # same or new: accepted
        with pytest.raises(CandleError, match=r"\(10 conflicting candle\(s\);") as info:
            store.refuse_conflicts(KEY, candles(0, 60), page_rows=7)
        assert info.value.row == 40 and "nothing was written" in str(info.value)
        assert len(store.read_candles(KEY)) == 40
