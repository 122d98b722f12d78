"""The service and a busy database: a write that finds another process holding SQLite's write
lock beyond the busy timeout waits and retries (a warning each time) instead of dying; an error
that is not a busy lock (a full disk) stays fatal."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from agent.errors import StoreError
from agent.service import jobs, ledger
from tests.integration.service.conftest import StartRuntime
from tests.unit.service.fixtures import service_settings


def test_a_lock_held_beyond_the_busy_timeout_costs_a_retry_not_the_service(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data")
    started = start_runtime(settings)
    runtime = started.runtime
    store = runtime.require_store()
    store.db.execute("PRAGMA busy_timeout = 200")  # SQLite's own wait, per attempt: 0.2 s
    other = sqlite3.connect(str(store.path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's long write
    released = threading.Event()

    def release() -> None:
        time.sleep(1.5)
        other.execute("COMMIT")
        released.set()

    holder = threading.Thread(target=release)
    holder.start()
    try:
        result = jobs.run_job(runtime, "tick", lambda r: jobs.tick(r, max_bars=1))
    finally:
        holder.join()
        other.close()

    assert released.is_set()
    assert (result.status, result.bars) == ("ok", 1), result.detail
    assert runtime.fatal is None and started.events("fatal") == []
    busy = started.events("database_busy")
    assert busy and busy[0]["attempt"] == 1 and busy[0]["level"] == "warning"
    assert busy[0]["what"].startswith("candles of replay-synthetic")
    assert [e["bar_time_ms"] for e in started.events("decision")] == [
        tick.bar_time_ms for tick in ledger.decisions_after(store, runtime.market, None)
    ]
    counts = ledger.tick_counts(store, runtime.market)
    assert (counts["decided"], counts["skipped"]) == (1, 0)

    # an error that is not a busy lock is not retried: a full disk stops the service
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    retries = len(started.events("database_busy"))
    failed = jobs.run_job(runtime, "tick", lambda r: jobs.tick(r, max_bars=1))
    assert failed.status == "fatal" and isinstance(runtime.fatal, StoreError)
    assert "database or disk is full" in str(runtime.fatal)
    assert len(started.events("database_busy")) == retries
