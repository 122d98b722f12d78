"""Fill a data directory's store with a long-running service's history, for the dashboard.

`fill` writes, through the project's own writers: the market's candles, the service genesis,
`decisions` service bars (each an intent in `service_ticks`, a decision record chained into the
audit trail with `append_decision`, then marked decided; a few bars skipped), the service's
jobs, strategy registrations, a few models and promotions, a few backtest runs, and `epochs`
reward epochs whose allocations are split by the real scoring, payout and Merkle code.

The writers take one transaction per row; here they run inside one transaction per page
(`_BatchedStore`: a store whose `transaction` joins the page's open one), so the SQL is exactly
theirs; 100,000 decisions take about a minute on 2 cores (the records are encoded and hashed
one by one: each links to the previous). The decision records are
valid: their hashes chain, and the offline part of `agora audit verify` accepts them (they are
`pending`: never sent to a DecisionLog). Timestamps that the writers take from the wall clock
(`created_ms`, `created_at`) are the time of the fill; bar times are real hours ending now.

    python benchmarks/_dashboard_data.py DIR [--decisions N] [--epochs N] [--seed N]

prints the summary as JSON (counts, seconds per part, the database's size).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make `agent` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import Settings
from agent.market.schema import SeriesKey
from agent.store import Store

MARKET = SeriesKey("synthetic", "SYN/USD", "1h")
HOUR_MS = 3_600_000
PAGE = 5_000
"""Decisions written per transaction (the write lock is released between pages)."""
SKIP_EVERY = 500
"""About one bar in this many is skipped (a feed gap), as a running service skips some."""
SHIPPED = ("ma-crossover", "rsi-reversion", "macd")
CHAIN_KEY = "anvil:31337"
TREASURY_ADDRESS = "0x" + "7e" * 20


class _BatchedStore(Store):
    """A store whose writers' transactions join the one `page` opened, if any."""

    _page: Any = None

    def __enter__(self) -> _BatchedStore:
        return self

    @contextmanager
    def page(self, what: str) -> Iterator[None]:
        """Run a block of writes in one transaction (every writer called in it joins it)."""
        with super().transaction(what) as conn:
            self._page = conn
            try:
                yield
            finally:
                self._page = None

    @contextmanager
    def transaction(self, what: str = "a write") -> Iterator[Any]:
        if self._page is not None:
            yield self._page
            return
        with super().transaction(what) as conn:
            yield conn


def fill(
    data_dir: Path,
    decisions: int = 100_000,
    epochs: int = 1_000,
    seed: int = 0,
    *,
    strategies: int = 10,
    models: int = 4,
    backtests: int = 3,
) -> dict[str, Any]:
    """Fill the store of `data_dir` (created; it must hold no service history yet).

    Args:
        data_dir: the data directory (its database is `Settings().data.database`).
        decisions: service bars decided (seq 0 to decisions - 1).
        epochs: reward epochs, covering the decided bars in equal windows.
        seed: seeds every random choice (prices, signals, contributions).
        strategies: strategies competing (the shipped ones, then plugins).
        models: models registered (each promoted in turn, the last one live).
        backtests: backtest runs recorded (synthetic data, 900 bars each).

    Returns:
        What was written (counts), the seconds each part took and the database's size.
    """
    if decisions < 1 or epochs < 1 or decisions < epochs:
        raise ValueError(
            f"decisions {decisions}, epochs {epochs}: expected 1 <= epochs <= decisions"
        )
    settings = Settings.model_validate({"data": {"dir": str(data_dir)}})
    rng = np.random.default_rng(seed)
    names = _strategy_names(strategies)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with _BatchedStore(settings.data.database_path) as store:
        if store.db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]:
            raise ValueError(f"{store.path} already holds decisions: fill an empty data directory")
        step = time.perf_counter()
        model_ids = _models(store, names, models, rng)
        registrations = _registrations(store, names)
        seconds["models_and_registrations"] = time.perf_counter() - step
        step = time.perf_counter()
        bars = _candles(store, decisions, rng)
        candles = store.db.execute("SELECT COUNT(*) FROM candles").fetchone()[0]
        seconds["candles"] = time.perf_counter() - step
        step = time.perf_counter()
        ticks = _service(store, settings, bars, decisions, names, model_ids, rng)
        seconds["decisions"] = time.perf_counter() - step
        step = time.perf_counter()
        rewards = _epochs(store, settings, bars, ticks["first_bar"], epochs, names, model_ids, rng)
        seconds["epochs"] = time.perf_counter() - step
        step = time.perf_counter()
        runs = _backtests(store, settings, backtests)
        seconds["backtests"] = time.perf_counter() - step
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = store.path
    seconds["total"] = time.perf_counter() - started
    return {
        "database": str(path),
        "market": str(MARKET),
        "candles": candles,
        **ticks,
        **rewards,
        "strategies": list(names),
        "registrations": registrations,
        "models": len(model_ids),
        "backtest_runs": runs,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "database_bytes": path.stat().st_size,
    }


def _strategy_names(count: int) -> tuple[str, ...]:
    plugins = tuple(f"plugin-{i:02d}" for i in range(1, max(count - len(SHIPPED), 0) + 1))
    return (SHIPPED + plugins)[:count]


def _hex(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


# --- candles ------------------------------------------------------------------------------------
def _candles(store: Store, decisions: int, rng: np.random.Generator) -> pd.DataFrame:
    """Hourly candles ending at the last closed hour: a warm-up, then one bar per decision."""
    from agent.env.trading_env import EnvConfig

    warmup = EnvConfig().first_bar + 1
    count = warmup + decisions + decisions // SKIP_EVERY + 1
    last = (time.time_ns() // 1_000_000 // HOUR_MS - 1) * HOUR_MS
    times = last - HOUR_MS * np.arange(count - 1, -1, -1, dtype="int64")
    log_price = np.empty(count)  # mean-reverting around 100, so years of bars stay in range
    log_price[0], shocks = 0.0, rng.normal(0.0, 0.006, count)
    for i in range(1, count):
        log_price[i] = 0.9995 * log_price[i - 1] + shocks[i]
    close = 100.0 * np.exp(log_price)
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.003, count)) * close
    candles = pd.DataFrame(
        {
            "open_time": times,
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(10.0, 1_000.0, count),
        }
    )
    for at in range(0, count, 50_000):  # pages, as `agent.market.sources.ingest` writes them
        store.write_candles(MARKET, candles.iloc[at : at + 50_000])
    return candles.iloc[warmup - 1 :].reset_index(drop=True)  # the genesis bar, then decisions


# --- the service --------------------------------------------------------------------------------
def _service(
    store: _BatchedStore,
    settings: Settings,
    bars: pd.DataFrame,
    decisions: int,
    names: tuple[str, ...],
    model_ids: list[str],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Decide `decisions` bars as the service does (intent, record, decided); skip a few."""
    from agent.audit.outbox import append_decision
    from agent.audit.record import config_digest
    from agent.dex.pool import MarketCoupledPool, PoolConfig
    from agent.service import ledger
    from agent.service.decision import (
        Genesis,
        carried_state,
        decide_outcome,
        decision_fields,
        expected_genesis_pool,
        initial_quote_units,
    )

    market = str(MARKET)
    times = bars["open_time"].to_numpy(dtype="int64")
    prices = bars["close"].to_numpy(dtype="float64")
    history = store.db.execute("SELECT COUNT(*) FROM candles").fetchone()[0] - len(times) + 1
    genesis = Genesis(
        market,
        int(times[0]),
        history,
        initial_quote_units(settings),
        expected_genesis_pool(settings),
    )
    ledger.put_state(store, "genesis", genesis.as_dict())
    pool = MarketCoupledPool(PoolConfig.from_settings(settings.dex))
    config_hash = config_digest(settings)
    n = len(names)
    signals = np.clip(rng.normal(0.0, 0.5, (len(times), n)), -1.0, 1.0)
    masks = rng.random((len(times), n)) > 0.05
    # the policy's exposure moves now and then (about one bar in 100), not every bar
    moves = np.clip(0.5 + 1.5 * signals.mean(axis=1), 0.0, 1.0)
    changes = rng.random(len(times)) < 0.01
    targets = moves[np.maximum.accumulate(np.where(changes, np.arange(len(times)), 0))]
    features = rng.normal(0.0, 1.0, (len(times), 8)).astype("float32")
    state = carried_state(None, genesis)
    seq = bar = skipped = trades = 0
    while seq < decisions:
        with store.page(f"service bars from seq {seq}"):
            stop = min(seq + PAGE, decisions)
            while seq < stop:
                bar += 1
                bar_ms, price = int(times[bar]), float(prices[bar])
                if bar % SKIP_EVERY == SKIP_EVERY // 2:
                    ledger.record_skip(store, market, bar_ms, "no candle from the feed in time")
                    skipped += 1
                    continue
                model_id = model_ids[min(seq * len(model_ids) // decisions, len(model_ids) - 1)]
                observation = np.concatenate(
                    [features[bar], np.where(masks[bar], signals[bar], 0.0), [state["base"] > 0]]
                ).astype("float32")
                outcome = decide_outcome(pool, state, price, float(targets[bar]))
                fields = decision_fields(
                    bar_ms=bar_ms,
                    market=market,
                    model_id="0x" + model_id,
                    config_hash=config_hash,
                    observation=observation,
                    names=names,
                    signals=signals[bar],
                    masks=masks[bar],
                    target=float(targets[bar]),
                    trade=outcome.trade,
                    fee_bps=pool.config.fee_bps,
                    gas_per_swap=pool.config.gas_per_swap,
                )
                outcome = dataclasses.replace(
                    outcome, fields=fields, observation=tuple(observation.tolist())
                )
                ledger.record_intent(store, market, bar_ms, outcome)
                record = append_decision(store, fields)
                ledger.mark_decided(store, market, bar_ms, record.seq)
                state = {
                    "base": outcome.balances[0],
                    "quote": outcome.balances[1],
                    "pool": list(outcome.pool_after),
                    "gas_total": outcome.gas_total,
                    "arbitrage_flow": list(outcome.arbitrage_flow),
                }
                trades += outcome.trade.side != "none"
                seq += 1
    now = ledger.now_ms()
    for job, runs in (("tick", decisions + skipped), ("flush", decisions // 10), ("rewards", 0)):
        if runs:
            ledger.job_run(store, job, now - 2_000, "ok", f"{runs} runs")
    return {
        "decisions": decisions,
        "skipped": skipped,
        "trades": trades,
        "first_bar": 1,
        "last_bar_ms": int(times[bar]),
        "final_value_quote": round(float(outcome.value_quote), 2),
    }


# --- strategies and models ----------------------------------------------------------------------
def _registrations(store: Store, names: tuple[str, ...]) -> int:
    """Register and install every plugin on the chain, as `agora strategies submit` records it."""
    from agent.plugins.onchain_registry import RegistrationContext, insert_row, update_row

    rows = 0
    for i, name in enumerate(n for n in names if n not in SHIPPED):
        context = RegistrationContext(
            chain=cast(Any, None),
            store=store,
            chain_key=CHAIN_KEY,
            registry=cast(Any, None),
            name=name,
            code_hash=_hex("code", name),
            payout="0x" + _hex("payout", name)[:40],
        )
        row = insert_row(context, "pending")
        update_row(store, row, status="registered", version=1, tx_hash="0x" + _hex("tx", name))
        update_row(store, row, status="installed", installed_path=f"plugins/{name}.py")
        rows += 1
        if i == 0:  # one strategy was later retired
            retired = insert_row(context, "retired")
            update_row(store, retired, tx_hash="0x" + _hex("retire", name))
            rows += 1
    return rows


def _models(
    store: Store, names: tuple[str, ...], count: int, rng: np.random.Generator
) -> list[str]:
    """Register `count` models and promote each in turn (the last one stays live)."""
    from agent.learn.registry import ModelRecord, register

    ids = []
    previous: str | None = None
    at_ms = time.time_ns() // 1_000_000 - count * 86_400_000
    for i in range(max(count, 1)):
        model_id = _hex("model", i)
        register(
            store,
            ModelRecord(
                id=model_id,
                created_ms=at_ms,
                algorithm="ppo",
                series={"source": MARKET.source, "symbol": MARKET.symbol, "timeframe": "1h"},
                hyperparameters={"learning_rate": 3e-4, "n_steps": 2048, "seed": i},
                config_hash=_hex("config")[:16],
                data_hash=_hex("data", i)[:16],
                strategies=list(names),
                seeds=[i],
                metrics={
                    "validation": {"log_return": float(rng.normal(0.05, 0.02))},
                    "test": {"log_return": float(rng.normal(0.03, 0.02))},
                },
                path=f"models/{model_id}.zip",
            ),
        )
        score = float(rng.normal(0.05, 0.01))
        _record_promotion(store, model_id, previous, at_ms + 60_000, score, i)
        previous = model_id
        ids.append(model_id)
        at_ms += 86_400_000
    return ids


def _record_promotion(
    store: Store, model_id: str, previous: str | None, at_ms: int, score: float, i: int
) -> None:
    """Make a model live, with the SQL of `agent.learn.registry.promote` (its gate needs the
    model file and a validation run, which a fill does not have)."""
    with store.transaction("a promotion") as conn:
        conn.execute("UPDATE models SET status = 'retired' WHERE status = 'live'")
        conn.execute(
            "UPDATE models SET status = 'live', promoted_ms = ? WHERE id = ?", [at_ms, model_id]
        )
        conn.execute(
            "INSERT INTO model_promotions (at_ms, model_id, previous_id, promoted, forced, "
            "candidate_score, live_score, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                at_ms,
                model_id,
                previous,
                1,
                0,
                score,
                None if previous is None else score - 0.01,
                "passed the gate" if i else "first model: beat flat and buy-and-hold",
            ],
        )


# --- reward epochs ------------------------------------------------------------------------------
def _epochs(
    store: _BatchedStore,
    settings: Settings,
    bars: pd.DataFrame,
    first_bar: int,
    epochs: int,
    names: tuple[str, ...],
    model_ids: list[str],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Record `epochs` epochs over the decided bars; all but the last few published, most
    allocations claimed."""
    from eth_utils import to_checksum_address

    from agent.rewards.epochs import RECORDED, PayoutAccount, _with_leaves
    from agent.rewards.ledger import (
        COMPUTED,
        EMPTY,
        METADATA,
        TREASURY,
        Allocation,
        EpochRecord,
        mark_claimed,
        mark_published,
        now,
        write_epoch,
    )
    from agent.rewards.payout import epoch_pool, split
    from agent.rewards.scoring import Standing, evidence_weights, released, score_epoch

    rewards = settings.rewards
    times = bars["open_time"].to_numpy(dtype="int64")
    width = (len(times) - 1 - first_bar) // epochs
    treasury = to_checksum_address(TREASURY_ADDRESS)
    accounts = {
        n: PayoutAccount(treasury, TREASURY)
        if n in SHIPPED
        else PayoutAccount(to_checksum_address("0x" + _hex("payout", n)[:40]), METADATA)
        for n in names
    }
    skill = rng.normal(0.0, 0.002, len(names))
    carry = published = claimed = 0
    standings: dict[str, Standing] = {}  # `ledger.previous_standings`, kept as it grows
    for start in range(0, epochs, 200):
        with store.page(f"reward epochs from {start}"):
            for epoch in range(start, min(start + 200, epochs)):
                begin, end = first_bar + epoch * width, first_bar + (epoch + 1) * width
                values = skill + rng.normal(0.0, 0.004, len(names))
                errors = np.abs(rng.normal(0.002, 0.0005, len(names)))
                scores = score_epoch(
                    epoch,
                    names,
                    dict(zip(names, values.tolist(), strict=True)),
                    dict(zip(names, errors.tolist(), strict=True)),
                    standings,
                    significance=rewards.significance,
                    half_life_epochs=rewards.decay_half_life_epochs,
                )
                release = released(carry, rewards.carry_release)
                pool = epoch_pool(rewards.emission_per_epoch, release)
                weights, denominator = evidence_weights(scores, rewards.significance)
                payout = split(pool, weights, rewards.remainder_policy, denominator)
                rows = [
                    Allocation(
                        i, s.name, accounts[s.name].address, accounts[s.name].source,
                        s.contribution, s.std_error, amount,
                    )
                    for i, (s, amount) in enumerate(zip(scores, payout.amounts, strict=True))
                ]  # fmt: skip
                rows, root = _with_leaves(epoch, rows)
                v_all = float(values.sum())
                summary = {
                    "method": "exact",
                    "permutations": 0,
                    "seed": rewards.shapley_seed,
                    "v_all": v_all,
                    "v_empty": 0.0,
                    "evaluations": 2 ** len(names),
                    "bootstrap": {"samples": rewards.bootstrap_samples},
                    "groups_played": [[n] for n in names],
                    "players": [
                        {"name": n, "value": v, "std_error": e}
                        for n, v, e in zip(names, values.tolist(), errors.tolist(), strict=True)
                    ],
                    "source": RECORDED,
                    "source_detail": {"decided": width, "skipped": 0, "verified": True},
                    "inactive": [],
                    "quarantined": [],
                    "groups": {n: {"group": n, "r2": 0.0} for n in names},
                    "scores": [s.to_dict() for s in scores],
                    "significance": rewards.significance,
                    "decay_half_life_epochs": rewards.decay_half_life_epochs,
                    "released": release,
                    "evidence_denominator": float(denominator),
                }
                model = model_ids[min(epoch * len(model_ids) // epochs, len(model_ids) - 1)]
                record = EpochRecord(
                    epoch=epoch,
                    start_bar=begin,
                    end_bar=end,
                    start_ms=int(times[begin]),
                    end_ms=int(times[end]),
                    model_id=model,
                    metric="log_return",
                    v_all=v_all,
                    v_empty=0.0,
                    emission=rewards.emission_per_epoch,
                    carry_in=carry,
                    profit_share=0,
                    pool=payout.pool,
                    total=payout.paid,
                    remainder=payout.remainder,
                    remainder_policy=payout.remainder_policy,
                    carry_out=payout.carry_out + carry - release,
                    root=root,
                    status=COMPUTED if payout.paid else EMPTY,
                    attribution=summary,
                    created_at=now(),
                    allocations=tuple(rows),
                )
                write_epoch(store, record)
                carry = record.carry_out
                standings = {
                    x.name: Standing(x.accumulated, x.accumulated_se**2, epoch) for x in scores
                }
                if root is not None and epoch < epochs - 3:
                    mark_published(store, epoch, CHAIN_KEY, "0x" + _hex("publish", epoch))
                    published += 1
                    for row in rows:
                        if row.leaf_index is not None and rng.random() < 0.8:
                            tx = "0x" + _hex("claim", epoch, row.position)
                            mark_claimed(store, epoch, row.position, CHAIN_KEY, tx)
                            claimed += 1
    return {"epochs": epochs, "epoch_bars": width, "published": published, "claims": claimed}


# --- backtests ----------------------------------------------------------------------------------
def _backtests(store: Store, settings: Settings, count: int) -> int:
    """Run and record `count` small backtests on synthetic data (with their results and HTML
    reports under the data directory's `reports/`), as `agora backtest` does."""
    if count <= 0:
        return 0
    from agent.backtest.runner import run_scenario, write_outputs
    from agent.backtest.scenario import Scenario
    from strategies import MACD, MACrossover, RSIReversion

    policies = ("ma-crossover", "rsi-reversion", "macd")
    for i in range(count):
        scenario = Scenario.model_validate(
            {
                "name": f"dashboard-{i}",
                "data": {"source": "synthetic", "synthetic": {"bars": 900, "seed": i}},
                "policy": {"strategy": policies[i % len(policies)]},
            }
        )
        run = run_scenario(scenario, settings, strategies=[MACrossover, RSIReversion, MACD])
        write_outputs(run, scenario, store, Path(settings.data.dir) / "reports")
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="the data directory to fill (empty)")
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = fill(args.data_dir, args.decisions, args.epochs, args.seed)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
