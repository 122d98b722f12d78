"""A 3M-row `agora data import` of another series beside the running service: the import
holds SQLite's write lock one page at a time, so the service keeps writing and makes every
bar, with no fatal error and no bar skipped."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.config import load_settings
from tests.unit.service.fixtures import prepare

ROWS = 3_000_000
DUPLICATE_EVERY = 10
"""Every tenth line is written twice (identical): the import resolves duplicates too."""
BARS, START = 2_300, 300
"""Far more bars than the test lasts at `replay_speed`: it stops the service itself."""
CONFIG = f"""
data:
  dir: data
market:
  synthetic:
    bars: {BARS}
    seed: 11
agent:
  strategies: [ma-crossover, rsi-reversion, ts-momentum]
service:
  start_bar: {START}
  replay_speed: 2
  bootstrap_model: false
  pay_rewards: false
  port: 0
  heartbeat_s: 1
"""


def write_minute_csv(path: Path, rows: int) -> int:
    """Write `rows` lines of 1m candles (with identical duplicates); return the unique bars."""
    unique = rows * DUPLICATE_EVERY // (DUPLICATE_EVERY + 1)
    rng = np.random.default_rng(3)
    close = 100 * np.exp(rng.normal(0, 1e-3, 1_000).cumsum())
    bodies = [
        f"{c:.4f},{c * 1.002:.4f},{c * 0.998:.4f},{c:.4f},{v:.3f}"
        for c, v in zip(close, rng.uniform(1, 10, close.size), strict=True)
    ]
    times = 1_600_000_020_000 + 60_000 * np.arange(unique, dtype=np.int64)
    lines = [f"{t},{bodies[i % len(bodies)]}" for i, t in enumerate(times.tolist())]
    lines += lines[::DUPLICATE_EVERY][: rows - unique]
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    return unique


class Events:
    """Collect a process's stderr in a thread; parse its JSON events."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for line in list(self.lines)
            if line.startswith("{") and f'"event":"{name}"' in line
        ]


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def imported_bars(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM candles WHERE source = 'csv' AND symbol = 'BIG/USD' "
                "AND timeframe = '1m'"
            ).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    return int(row[0])


@pytest.mark.slow
def test_a_3m_row_import_beside_the_running_service_the_service_makes_every_bar(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    settings = load_settings(tmp_path / "config.yaml", environ={})
    prepare(settings)  # a live model, so the service trades at once
    database = settings.data.database_path
    csv = tmp_path / "big.csv"
    unique = write_minute_csv(csv, ROWS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA__")}

    service = subprocess.Popen(
        [sys.executable, "-m", "agent", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = Events(service.stderr)
    importer: subprocess.Popen[str] | None = None
    try:
        wait_until(lambda: log.events("decision") or service.poll() is not None, 300, "trading")
        import_started = time.time()
        command = ["data", "import", str(csv), "--symbol", "BIG/USD", "--timeframe", "1m", "--json"]
        importer = subprocess.Popen(
            [sys.executable, "-m", "agent", *command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        writing_from: float | None = None  # when the first page of the import was committed
        while importer.poll() is None and service.poll() is None:
            if writing_from is None and imported_bars(database) > 0:
                writing_from = time.time()
            time.sleep(0.2)
        out, err = importer.communicate(timeout=600)
        writing_until = time.time()
        after = len(log.events("decision")) + 3  # then a few bars more, and stop
        wait_until(
            lambda: len(log.events("decision")) >= after or service.poll() is not None,
            120,
            "the bars after the import",
        )
    finally:
        if importer is not None and importer.poll() is None:
            importer.kill()
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=60)

    assert importer.returncode == 0, err
    report = json.loads(out)
    assert (report["received"], report["inserted"]) == (unique, unique)
    assert service.returncode == 0, "".join(log.lines[-30:])
    assert log.events("fatal") == [] and log.events("bar_skipped") == []
    decisions = log.events("decision")
    assert [d["seq"] for d in decisions] == list(range(len(decisions)))
    with sqlite3.connect(database) as conn:
        ticks = conn.execute(
            "SELECT status, COUNT(*), MIN(seq), MAX(seq), MIN(bar_time_ms), MAX(bar_time_ms) "
            "FROM service_ticks GROUP BY status"
        ).fetchall()
    hour = 3_600_000
    (status, count, first_seq, last_seq, first_bar, last_bar) = ticks[0]
    assert len(ticks) == 1 and status == "decided"  # every bar handled was decided
    assert (count, first_seq, last_seq) == (len(decisions), 0, len(decisions) - 1)
    assert last_bar - first_bar == (count - 1) * hour  # no bar left out
    stamps = [datetime.fromisoformat(d["ts"]).timestamp() for d in decisions]
    during = [t for t in stamps if import_started <= t <= writing_until]
    longest = max(np.diff([import_started, *during, writing_until]))
    print(
        f"import of {ROWS} rows: {writing_until - import_started:.1f} s, of which writing "
        f"{writing_until - (writing_from or writing_until):.1f} s; the service decided "
        f"{len(during)} of its {len(decisions)} bars meanwhile, the longest pause between two "
        f"was {longest:.1f} s; {len(log.events('database_busy'))} busy retries"
    )
    # a bar every 0.5 s; one transaction for the whole import would stall it for its length
    assert longest < 5.0, f"the service stalled for {longest:.1f} s beside the import"
