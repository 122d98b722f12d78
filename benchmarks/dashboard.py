"""Dashboard pages on a large store: each route's first and repeated load in a fresh process.

Run on demand: `.venv/bin/python benchmarks/dashboard.py [--decisions 100000] [--epochs 1000]`.
A temporary data directory is filled with `benchmarks/_dashboard_data.fill` (a long-running
service's history: decisions, skipped bars, reward epochs with claims, models, backtest runs;
its time is printed apart), every decision but the last `--pending` is then marked confirmed
on the DecisionLog (as a service with a chain leaves them, so the audit page's head covers
them), and the dashboard is started in a FRESH process (`agent.dashboard.server.serve` on a
free loopback port, as `agora dashboard` does): no cache of an earlier request is warm, as
for a person opening the dashboard. Each route is then requested twice over HTTP (`first`,
`repeat`), in the order of the table; a route's first load may follow other routes' loads in
the same process (the shared caches, e.g. the service status, are then warm; it is the
order a person browses in). `--data-dir` reuses (or fills once) a directory instead.

The target (issue 17): every page and API answer in under 300 ms, first load included.
Prints a table (no assertions).
"""

from __future__ import annotations

import argparse
import http.client
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `agent` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import limit_target, print_header, print_table, print_targets

from agent.config import Settings

LIMIT_S = 0.300
SERVE = (
    "import sys\n"
    "from agent.config import Settings\n"
    "from agent.dashboard.server import serve\n"
    "serve(Settings.model_validate({'data': {'dir': sys.argv[1]}}), port=0)\n"
)


def _fill(data_dir: Path, decisions: int, epochs: int) -> None:
    from _dashboard_data import fill

    started = time.perf_counter()
    summary = fill(data_dir, decisions=decisions, epochs=epochs)
    print(
        f"filled {data_dir} in {time.perf_counter() - started:.1f} s: {summary['decisions']:,} "
        f"decisions ({summary['skipped']:,} bars skipped), {summary['epochs']:,} epochs, "
        f"{summary['database_bytes'] / 1e6:,.0f} MB",
        flush=True,
    )


def _prepare(database: Path, pending: int) -> None:
    """Migrate the store (timed apart: an upgrade pays it once), then mark every decision but
    the last `pending` confirmed, in a block per 100 (as a service sends them)."""
    from agent.store import MIGRATIONS, Store

    conn = sqlite3.connect(database)
    (before,) = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    started = time.perf_counter()
    Store(database).close()
    if before < len(MIGRATIONS):
        print(
            f"store migrated from schema {before} to {len(MIGRATIONS)} in "
            f"{time.perf_counter() - started:.2f} s (once)",
            flush=True,
        )
    with conn:
        conn.execute(
            "UPDATE decisions SET status = 'confirmed', attempts = 1, "
            "tx_hash = printf('0x%064x', seq / 100), block_number = 1 + seq / 100 "
            "WHERE seq < (SELECT MAX(seq) + 1 - ? FROM decisions) AND status != 'confirmed'",
            [pending],
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as the service's checkpoints leave it
    conn.close()


def _routes(database: Path) -> list[tuple[str, str]]:
    """Return (label, path) of every page and API read, on rows the store holds."""
    with sqlite3.connect(database) as conn:
        last = int(conn.execute("SELECT MAX(seq) FROM decisions").fetchone()[0])
        epoch = int(conn.execute("SELECT MAX(epoch) FROM reward_epochs").fetchone()[0])
        run = conn.execute(
            "SELECT run_id FROM backtest_runs WHERE report_path IS NOT NULL "
            "ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    routes = [
        ("/live", "/live"),
        ("/live?before= (middle)", f"/live?before={last // 2}"),
        ("/decisions/{seq} (middle)", f"/decisions/{last // 2}"),
        ("/api/decisions?after= (newest 50)", f"/api/decisions?after={last - 50}"),
        ("/api/decisions?before= (middle)", f"/api/decisions?before={last // 2}"),
        ("/audit", "/audit"),
        ("/contributors", "/contributors"),
        ("/contributors?before= (middle)", f"/contributors?before={epoch // 2}"),
        ("/models", "/models"),
        ("/backtests", "/backtests"),
    ]
    if run is not None:
        routes.append(("/backtests/{id}/report", f"/backtests/{run[0]}/report"))
    return routes


def _start(data_dir: Path) -> tuple[subprocess.Popen[str], str, int, float]:
    """Start the dashboard in a fresh process; return (process, host, port, seconds to serve)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    env.pop("AGORA_DASHBOARD_TOKEN", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "agora dashboard on http://127.0.0.1:PORT"
    if "http://" not in line:
        process.kill()
        raise SystemExit(f"the dashboard did not start: {line!r}")
    host, port = line.strip().rsplit("http://", 1)[1].rsplit(":", 1)
    while True:  # the line is printed before uvicorn listens: wait for an answer
        try:
            _get(host, int(port), "/static/none")
            break
        except OSError:
            time.sleep(0.02)
    return process, host, int(port), time.perf_counter() - started


def _get(host: str, port: int, path: str) -> tuple[float, int, int]:
    """GET a path on a new connection; return (seconds, status, body bytes)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return time.perf_counter() - started, response.status, len(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=1_000)
    parser.add_argument("--pending", type=int, default=20, help="decisions left unconfirmed")
    parser.add_argument("--data-dir", type=Path, help="reuse (or fill once) this directory")
    args = parser.parse_args(argv)
    print_header(
        ("starlette", "uvicorn"),
        f"dashboard over {args.decisions:,} decisions and {args.epochs:,} epochs, fresh process",
    )
    with tempfile.TemporaryDirectory(prefix="agora-dashboard-bench-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        database = Settings.model_validate({"data": {"dir": str(data_dir)}}).data.database_path
        if not database.exists():
            _fill(data_dir, args.decisions, args.epochs)
        _prepare(database, args.pending)
        routes = _routes(database)
        process, host, port, start_s = _start(data_dir)
        print(f"dashboard process serving after {start_s:.2f} s", flush=True)
        rows, slowest = [], (0.0, "")
        try:
            for label, path in routes:
                first, status, size = _get(host, port, path)
                repeat, _, _ = _get(host, port, path)
                rows.append((label, status, size, first * 1e3, repeat * 1e3))
                slowest = max(slowest, (max(first, repeat), label))
        finally:
            process.terminate()
            process.wait(timeout=10)
    print()
    print_table(("route", "status", "bytes", "first ms", "repeat ms"), rows)
    print_targets(
        [limit_target(f"every page < 300 ms (slowest: {slowest[1]})", slowest[0], LIMIT_S)],
        issue=17,
    )


if __name__ == "__main__":
    main()
