"""Counts and values that triggers keep as ticks are written equal a pass over every tick row.

`ledger.tick_counts` reads the counts and the equity curve reads the decided bars' values
(`service_tick_values`); the slow pass is the query each ran before (parsing every outcome).
After any mix of intents, decisions, skips, failed writes, rewrites and deletes, and after the
migrations fill a store written without them, both agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlite_utils

from agent.dex.pool import MarketCoupledPool, PoolConfig
from agent.errors import StoreError
from agent.migrations import MIGRATIONS
from agent.service import ledger
from agent.service.decision import BarOutcome, Genesis, carried_state, decide_outcome
from agent.store import Store

MARKETS = ("synthetic:SYN/USD:1h", "binance:BTC/USDT:1h")


def slow_counts(store: Store, market: str) -> dict[str, int]:
    row = store.db.execute(
        "SELECT SUM(status != 'skipped'), SUM(status = 'skipped'), "
        "SUM(status != 'skipped' AND json_extract(outcome, '$.trade.side') != 'none') "
        "FROM service_ticks WHERE market = ?",
        [market],
    ).fetchone()
    return {"decided": int(row[0] or 0), "skipped": int(row[1] or 0), "trades": int(row[2] or 0)}


def slow_values(store: Store, market: str) -> list[tuple[int, float]]:
    return store.db.execute(
        "SELECT bar_time_ms, json_extract(outcome, '$.value_quote') FROM service_ticks "
        "WHERE market = ? AND status != 'skipped' ORDER BY bar_time_ms",
        [market],
    ).fetchall()


def kept_values(store: Store, market: str) -> list[tuple[int, float]]:
    return store.db.execute(
        "SELECT bar_time_ms, value_quote FROM service_tick_values WHERE market = ? "
        "ORDER BY bar_time_ms",
        [market],
    ).fetchall()


def assert_kept(store: Store) -> None:
    for market in (*MARKETS, "nowhere"):
        assert ledger.tick_counts(store, market) == slow_counts(store, market)
        assert kept_values(store, market) == slow_values(store, market)


def outcome_json(outcome: BarOutcome) -> str:
    return json.dumps(outcome.to_json_data(), sort_keys=True, separators=(",", ":"))


def outcomes() -> tuple[BarOutcome, BarOutcome]:
    """A bar held (no trade) and a bar bought, from the service's own decision step."""
    pool = MarketCoupledPool(PoolConfig())
    start = pool.reset(100.0)
    genesis = Genesis(MARKETS[0], 0, 300, 10_000_000_000, (start.base, start.quote, 0))
    held = decide_outcome(pool, carried_state(None, genesis), 100.0, 0.0)
    bought = decide_outcome(pool, carried_state(None, genesis), 120.0, 0.25)
    assert held.trade.side == "none" and bought.trade.side == "buy"
    return held, bought


def write_a_mix(store: Store) -> None:
    """Intents (traded or not), decisions, skips (some refused), a failed write, per market."""
    held, bought = outcomes()
    for m, market in enumerate(MARKETS):
        for bar in range(40 + 7 * m):
            bar_ms = 1_000 * bar
            if bar % 9 == 4:
                assert ledger.record_skip(store, market, bar_ms, "a gap in the feed")
                continue
            ledger.record_intent(store, market, bar_ms, bought if bar % 3 == 0 else held)
            if bar % 5 != 1:  # the others stay intents (a crash before the audit trail)
                ledger.mark_decided(store, market, bar_ms, bar)
            assert not ledger.record_skip(store, market, bar_ms, "late")  # the bar has its row
        with pytest.raises(StoreError):
            ledger.record_intent(store, market, 0, held)


def test_counts_equal_the_slow_count_after_intents_decisions_skips_and_failures(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "agora.db") as store:
        assert ledger.tick_counts(store, MARKETS[0]) == {"decided": 0, "skipped": 0, "trades": 0}
        write_a_mix(store)
        assert_kept(store)
        for market in MARKETS:
            counts = ledger.tick_counts(store, market)
            assert counts["decided"] > counts["trades"] > 0 and counts["skipped"] > 0
            assert len(kept_values(store, market)) == counts["decided"]


def test_counts_follow_rows_rewritten_moved_and_deleted(tmp_path: Path) -> None:
    held, bought = outcomes()
    with Store(tmp_path / "agora.db") as store:
        write_a_mix(store)
        store.db.execute(  # a traded bar's outcome replaced by a hold (and back for another)
            "UPDATE service_ticks SET outcome = ? WHERE market = ? AND bar_time_ms = 0",
            [outcome_json(held), MARKETS[0]],
        )
        store.db.execute(
            "UPDATE service_ticks SET outcome = ? WHERE market = ? AND bar_time_ms = 1000",
            [outcome_json(bought), MARKETS[0]],
        )
        store.db.execute(  # a decided bar reset to an intent
            "UPDATE service_ticks SET status = 'intent', seq = NULL WHERE bar_time_ms = 2000"
        )
        store.db.execute(
            "DELETE FROM service_ticks WHERE market = ? AND bar_time_ms >= 30000", [MARKETS[1]]
        )
        store.db.execute(  # a skipped bar and a traded one moved to the other market
            "UPDATE service_ticks SET market = ? "
            "WHERE market = ? AND bar_time_ms IN (31000, 33000)",
            [MARKETS[1], MARKETS[0]],
        )
        assert_kept(store)
        store.db.execute("DELETE FROM service_ticks")
        for market in MARKETS:
            assert ledger.tick_counts(store, market) == {"decided": 0, "skipped": 0, "trades": 0}
            assert kept_values(store, market) == []


def test_the_migration_counts_the_ticks_a_store_holds_already(tmp_path: Path) -> None:
    path = tmp_path / "agora.db"
    with Store(path) as store:
        write_a_mix(store)
        expected = {market: slow_counts(store, market) for market in MARKETS}
        values = {market: slow_values(store, market) for market in MARKETS}
    # the same rows in a store at the schema before the counts (migration 14)
    counted = MIGRATIONS.index(next(m for m in MIGRATIONS if m.__name__ == "_m014_tick_counts"))
    old = sqlite_utils.Database(tmp_path / "old.db")
    old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    for version, migration in enumerate(MIGRATIONS[:counted], start=1):
        migration(old)
        old.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, migration.__name__])
    old.execute("ATTACH DATABASE ? AS new", [str(path)])
    old.execute("INSERT INTO service_ticks SELECT * FROM new.service_ticks")
    old.conn.commit()
    old.execute("DETACH DATABASE new")
    old.close()
    with Store(tmp_path / "old.db") as store:
        assert store.schema_version == len(MIGRATIONS)
        for market in MARKETS:
            assert ledger.tick_counts(store, market) == expected[market]
            assert kept_values(store, market) == values[market]
        ledger.record_skip(store, MARKETS[0], 10**9, "after the upgrade")
        ledger.record_intent(store, MARKETS[0], 10**9 + 1, outcomes()[1])
        assert_kept(store)


def test_a_write_that_fails_leaves_the_counts_as_they_were(tmp_path: Path) -> None:
    held, _ = outcomes()
    with Store(tmp_path / "agora.db") as store:
        write_a_mix(store)
        before = ledger.tick_counts(store, MARKETS[0])
        with pytest.raises(StoreError), ledger.writing(store, "a failing write") as conn:
            conn.execute(
                "INSERT INTO service_ticks (market, bar_time_ms, status, outcome, created_ms, "
                "updated_ms) VALUES (?, ?, 'intent', ?, 0, 0)",
                [MARKETS[0], 10**9, outcome_json(held)],
            )
            conn.execute("SELECT * FROM no_such_table")
        assert ledger.tick_counts(store, MARKETS[0]) == before
        assert_kept(store)
