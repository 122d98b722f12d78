"""benchmarks/_dashboard_data.py fills a data directory that the project's own readers accept.

A small fill (2,000 decisions, 20 epochs) through the command line, read back with the
functions the CLI commands call: the service ledger, the audit trail and its offline
verification, the reward ledger, the model registry, the strategy registrations, the backtests.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.audit.outbox import iter_decisions, stored_count
from agent.audit.verify import find_first_mismatch
from agent.learn.registry import list_models, live_model
from agent.plugins.onchain_registry import read_registrations
from agent.rewards.ledger import leaderboard, list_epochs, read_epoch, totals
from agent.service import ledger
from agent.store import Store

ROOT = Path(__file__).resolve().parents[2]
DECISIONS, EPOCHS = 2_000, 20


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("dashboard")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "_dashboard_data.py"),
            str(data_dir),
            "--decisions",
            str(DECISIONS),
            "--epochs",
            str(EPOCHS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return data_dir, json.loads(done.stdout)


def test_the_service_ledger_ends_at_the_last_decision(filled: tuple[Path, dict[str, Any]]) -> None:
    data_dir, summary = filled
    with Store(summary["database"]) as store:
        last = ledger.last_decision(store, summary["market"])
        assert last is not None and last.seq == DECISIONS - 1
        assert last.status == "decided" and last.outcome is not None
        assert last.outcome.fields is not None and last.outcome.observation is not None
        counts = ledger.tick_counts(store, summary["market"])
        assert counts["decided"] == DECISIONS
        assert counts["skipped"] == summary["skipped"] > 0
        assert counts["trades"] == summary["trades"] > 0
        assert ledger.get_state(store, "genesis") is not None
        assert {job["job"] for job in ledger.read_jobs(store)} >= {"tick", "flush"}
    assert Path(summary["database"]).parent == data_dir


def test_the_decision_records_chain_and_verify_offline(filled: tuple[Path, dict[str, Any]]) -> None:
    _, summary = filled
    with Store(summary["database"]) as store:
        rows = list(iter_decisions(store))
        assert stored_count(store) == len(rows) == DECISIONS
    assert [row.seq for row in rows] == list(range(DECISIONS))
    assert all(row.record().prev_hash == prev.hash for prev, row in itertools.pairwise(rows))
    mismatch, hashes = find_first_mismatch(rows, [])  # no DecisionLog: the store's own chain
    assert mismatch is None
    assert hashes == [row.hash for row in rows]


def test_the_reward_ledger_holds_every_epoch_and_balances(
    filled: tuple[Path, dict[str, Any]],
) -> None:
    _, summary = filled
    with Store(summary["database"]) as store:
        assert list_epochs(store) == list(range(EPOCHS))
        books = totals(store)
        assert books["emitted"] == books["paid"] + books["carried"]
        assert books["paid"] > 0
        board = leaderboard(store)
        assert {row["strategy"] for row in board} >= set(summary["strategies"])
        assert all(row["epochs"] == EPOCHS for row in board if row["strategy"] != "(remainder)")
        assert sum(row["claimed"] for row in board) > 0
        first, last = read_epoch(store, 0), read_epoch(store, EPOCHS - 1)
        assert first is not None and last is not None
        assert len(first.allocations) == len(summary["strategies"])
        assert first.status == "published" and last.status in ("computed", "empty")
        assert last.end_bar <= summary["decisions"] + summary["skipped"]


def test_models_registrations_and_backtests_are_recorded(
    filled: tuple[Path, dict[str, Any]],
) -> None:
    from agent.backtest.report import list_runs

    _, summary = filled
    with Store(summary["database"]) as store:
        models = list_models(store)
        assert len(models) == summary["models"]
        live = live_model(store)
        assert live is not None and live.id == max(models, key=lambda m: m.created_ms).id
        assert len(read_registrations(store)) == summary["registrations"]
        assert len(list_runs(store)) == summary["backtest_runs"]
