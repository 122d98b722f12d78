"""The store shared by processes: migrations on a fresh database started at once, and a bulk
import that leaves the write lock free between its pages for another process's writes."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.market.schema import SeriesKey
from agent.store import MIGRATIONS, Store

MINUTE = 60_000
FIRST_MS = 1_600_000_020_000


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with a config.yaml whose data directory is inside it."""
    (tmp_path / "config.yaml").write_text("data:\n  dir: data\n")
    return tmp_path


def open_fresh(path: str, barrier: Barrier, results: multiprocessing.Queue) -> None:
    barrier.wait()
    try:
        Store(path).close()
        results.put("ok")
    except Exception as e:  # reported to the test, which prints it
        results.put(f"{type(e).__name__}: {e}")


@pytest.mark.parametrize("trial", range(8))
def test_processes_opening_a_fresh_database_at_once_all_migrate_it_once(
    tmp_path: Path, trial: int
) -> None:
    context = multiprocessing.get_context("fork")
    path = str(tmp_path / "agora.db")
    barrier = context.Barrier(4)
    results = context.Queue()
    processes = [
        context.Process(target=open_fresh, args=(path, barrier, results)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)

    assert outcomes == ["ok"] * 4
    with Store(path) as store:
        versions = store.db.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in versions] == list(range(1, len(MIGRATIONS) + 1))


def write_minute_csv(path: Path, bars: int) -> None:
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, bars)))
    opening = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame(
        {
            "timestamp": FIRST_MS + MINUTE * np.arange(bars, dtype=np.int64),
            "open": opening,
            "high": np.maximum(opening, close) * 1.001,
            "low": np.minimum(opening, close) * 0.999,
            "close": close,
            "volume": rng.uniform(1, 10, bars),
        }
    )
    frame.to_csv(path, index=False, float_format="%.8g")


def test_a_long_import_leaves_the_lock_free_between_pages_for_another_process(
    workdir: Path,
) -> None:
    bars = 300_000
    csv = workdir / "minutes.csv"
    write_minute_csv(csv, bars)
    database = workdir / "data" / "agora.db"
    imported = SeriesKey("csv", "BIG/USD", "1m")
    other = SeriesKey("csv", "OTHER/USD", "1m")
    # No retries and a 1 s busy timeout: one transaction holding the lock for the whole
    # import (1-2 s here) would fail these writes; a page holds it for ~0.2 s.
    writer = Store(database, busy_timeout_ms=1_000, busy_retry_s=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA__")}
    command = ["data", "import", str(csv), "--symbol", "BIG/USD", "--timeframe", "1m"]
    importer = subprocess.Popen(
        [sys.executable, "-m", "agent", *command],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = FIRST_MS
    seen: list[int] = []
    waits: list[float] = []
    n = 0
    try:
        while importer.poll() is None:
            candle = pd.DataFrame(
                [[n * MINUTE, 10.0, 11.0, 9.0, 10.0, 1.0]],
                columns=["open_time", "open", "high", "low", "close", "volume"],
            )
            started = time.monotonic()
            writer.write_candles(other, candle)
            waits.append(time.monotonic() - started)
            n += 1
            seen.append(writer.last_open_time(imported) or 0)
            time.sleep(0.05)
        out, err = importer.communicate(timeout=60)
        stored_other = len(writer.read_candles(other))
        stored_imported = len(writer.read_candles(imported))
    finally:
        if importer.poll() is None:
            importer.kill()
        writer.close()

    assert importer.returncode == 0, err
    assert f"{bars} candles received, {bars} new" in out
    last = first + MINUTE * (bars - 1)
    during = sorted({(t - first) // MINUTE + 1 for t in seen if first <= t < last})
    assert len(during) >= 3, f"the writes did not overlap the import's pages: {sorted(set(seen))}"
    assert stored_other == n and stored_imported == bars
    print(f"{n} writes beside the import, longest wait {max(waits):.3f} s, bars seen {during}")
