"""The store's schema: numbered migrations, each applied once in its own transaction.

`agent.store.Store` applies the ones a database lacks, in order, and records each in
`schema_migrations`; a migration is never edited once released, only followed by another.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]


def _m001_candles(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE candles (
            source TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
            open_time INTEGER NOT NULL,
            open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
            volume REAL NOT NULL,
            PRIMARY KEY (source, symbol, timeframe, open_time)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE hidden_series (
            source TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
            name TEXT NOT NULL, open_time INTEGER NOT NULL, value REAL NOT NULL,
            PRIMARY KEY (source, symbol, timeframe, name, open_time)
        ) WITHOUT ROWID
        """
    )


def _m002_deployments(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE deployments (
            chain_key TEXT NOT NULL, name TEXT NOT NULL, address TEXT NOT NULL,
            code_hash TEXT NOT NULL, deployed_at TEXT NOT NULL,
            PRIMARY KEY (chain_key, name)
        ) WITHOUT ROWID
        """
    )


def _m003_signals(db: sqlite_utils.Database) -> None:
    # Strategy signals computed on stored candles (agent.plugins.signals): one row per
    # (code, params, series, data range); `values_f64` holds little-endian float64 bytes.
    db.execute(
        """
        CREATE TABLE signal_cache (
            code_hash TEXT NOT NULL, params_hash TEXT NOT NULL, series TEXT NOT NULL,
            first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, data_hash TEXT NOT NULL,
            strategy TEXT NOT NULL, bars INTEGER NOT NULL, ok INTEGER NOT NULL, reason TEXT,
            values_f64 BLOB, elapsed_s REAL NOT NULL, created_ms INTEGER NOT NULL,
            PRIMARY KEY (code_hash, params_hash, series, first_ms, last_ms, data_hash)
        ) WITHOUT ROWID
        """
    )


def _m004_backtest_runs(db: sqlite_utils.Database) -> None:
    # One row per `agora backtest` run (agent.backtest.report): what is needed to reproduce it
    # (hashes, seed, code version) and its summary; the full results live in `results_path`.
    db.execute(
        """
        CREATE TABLE backtest_runs (
            run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, name TEXT NOT NULL,
            mode TEXT NOT NULL, main_policy TEXT, config_hash TEXT NOT NULL,
            data_hash TEXT NOT NULL, model_id TEXT, strategy_hashes TEXT NOT NULL,
            seed INTEGER NOT NULL, code_version TEXT NOT NULL, scenario TEXT NOT NULL,
            summary TEXT NOT NULL, results_path TEXT, report_path TEXT
        )
        """
    )


def _m005_rewards(db: sqlite_utils.Database) -> None:
    # Reward epochs (agent.rewards.epochs). Token amounts are decimal TEXT: they exceed 64 bits.
    # An epoch row is written before its root is sent on-chain; `chain_key` and `publish_tx` say
    # where it was last published. One allocation row per strategy (amount may be 0) plus, under
    # the treasury policy, one for the remainder; rows with a leaf carry its index and proof.
    db.execute(
        """
        CREATE TABLE reward_epochs (
            epoch INTEGER PRIMARY KEY, start_bar INTEGER NOT NULL, end_bar INTEGER NOT NULL,
            start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, model_id TEXT,
            metric TEXT NOT NULL, v_all REAL NOT NULL, v_empty REAL NOT NULL,
            emission TEXT NOT NULL, carry_in TEXT NOT NULL, profit_share TEXT NOT NULL,
            pool TEXT NOT NULL, total TEXT NOT NULL, remainder TEXT NOT NULL,
            remainder_policy TEXT NOT NULL, carry_out TEXT NOT NULL, root TEXT,
            status TEXT NOT NULL, attribution TEXT NOT NULL, chain_key TEXT, publish_tx TEXT,
            created_at TEXT NOT NULL, published_at TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE reward_allocations (
            epoch INTEGER NOT NULL REFERENCES reward_epochs (epoch), position INTEGER NOT NULL,
            strategy TEXT, account TEXT NOT NULL, account_source TEXT NOT NULL,
            contribution REAL, std_error REAL, amount TEXT NOT NULL,
            leaf_index INTEGER, leaf TEXT, proof TEXT,
            claim_tx TEXT, claimed_chain_key TEXT, claimed_at TEXT,
            PRIMARY KEY (epoch, position)
        ) WITHOUT ROWID
        """
    )


def _m006_decisions(db: sqlite_utils.Database) -> None:
    # The audit trail's outbox (agent.audit.outbox): one row per decision, written before it is
    # sent to the DecisionLog. `record` is the canonical JSON of the DecisionRecord, `hash` its
    # keccak256 (bytes32 hex); `status` is pending -> sent -> confirmed; `tx_hash`/`block_number`
    # name the transaction that logged it (NULL when unknown), `attempts` counts sends.
    db.execute(
        """
        CREATE TABLE decisions (
            seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, record TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'confirmed')),
            tx_hash TEXT, block_number INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX decisions_status ON decisions (status, seq)")


def _m007_models(db: sqlite_utils.Database) -> None:
    # The model registry (agent.learn.registry): `id` is the sha256 of the model file; JSON
    # columns hold the series, hyper-parameters, strategy specs, seeds and metrics. At most one
    # row is 'live'. `model_promotions` keeps every promotion attempt and the gate's scores.
    db.execute(
        """
        CREATE TABLE models (
            id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, algorithm TEXT NOT NULL,
            series TEXT NOT NULL, hyperparameters TEXT NOT NULL, config_hash TEXT NOT NULL,
            data_hash TEXT NOT NULL, strategies TEXT NOT NULL, seeds TEXT NOT NULL,
            metrics TEXT NOT NULL, path TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('candidate', 'live', 'retired')),
            promoted_ms INTEGER
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX models_one_live ON models (status) WHERE status = 'live'")
    db.execute(
        """
        CREATE TABLE model_promotions (
            at_ms INTEGER NOT NULL, model_id TEXT NOT NULL, previous_id TEXT,
            promoted INTEGER NOT NULL, forced INTEGER NOT NULL,
            candidate_score REAL, live_score REAL, reason TEXT NOT NULL
        )
        """
    )


def _m008_strategy_registrations(db: sqlite_utils.Database) -> None:
    # Strategy submissions (agent.plugins.registry), one row per event on one chain: a row is
    # written 'pending' before the StrategyRegistry transaction, then becomes 'registered'
    # (with its version and tx), then 'installed' once the file is in the plugin directory, or
    # 'failed' with the error. A retirement adds a 'retired' row (its tx, where the file went).
    db.execute(
        """
        CREATE TABLE strategy_registrations (
            id INTEGER PRIMARY KEY, chain_key TEXT NOT NULL, name TEXT NOT NULL,
            strategy_id TEXT NOT NULL, version INTEGER, code_hash TEXT NOT NULL,
            payout TEXT NOT NULL, tx_hash TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'registered', 'installed', 'failed', 'retired')),
            installed_path TEXT, error TEXT, created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        )
        """
    )
    db.execute(
        "CREATE INDEX strategy_registrations_name ON strategy_registrations (chain_key, name, id)"
    )


def _m009_service(db: sqlite_utils.Database) -> None:
    # The scheduled service (agent.service). `service_state`: named JSON documents (genesis, the
    # current run, heartbeat snapshot, the anvil node it started). `service_ticks`: one row per
    # bar the service handled, keyed by the bar's open time (the idempotency key): 'intent' is
    # written before anything is acted on and holds the whole decision and its pool outcome;
    # 'decided' once the decision is in the audit trail (`seq`); 'skipped' with a reason.
    # `service_chains`: per chain, the balances found before the service first acted on it and
    # the last bar replicated there; `service_executions`: the transactions of each bar on each
    # chain. `service_jobs`: the last run of each scheduled job.
    db.execute(
        """
        CREATE TABLE service_state (
            key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ms INTEGER NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE service_ticks (
            market TEXT NOT NULL, bar_time_ms INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('intent', 'decided', 'skipped')),
            seq INTEGER, reason TEXT, outcome TEXT,
            created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
            PRIMARY KEY (market, bar_time_ms)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE service_chains (
            chain_key TEXT PRIMARY KEY, genesis TEXT NOT NULL, synced_bar_ms INTEGER,
            created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE service_executions (
            chain_key TEXT NOT NULL, bar_time_ms INTEGER NOT NULL, arbitrage_tx TEXT,
            swap_tx TEXT, gas_used INTEGER NOT NULL, created_ms INTEGER NOT NULL,
            PRIMARY KEY (chain_key, bar_time_ms)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE service_jobs (
            job TEXT PRIMARY KEY, runs INTEGER NOT NULL, failures INTEGER NOT NULL,
            last_started_ms INTEGER, last_finished_ms INTEGER, last_status TEXT,
            last_detail TEXT
        ) WITHOUT ROWID
        """
    )


def _m010_backtest_decisions(db: sqlite_utils.Database) -> None:
    """The decision records of `--onchain` backtests, and the DecisionLog each was logged in."""
    db.execute(
        """
        CREATE TABLE backtest_decisions (
            run_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
            hash TEXT NOT NULL, PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE backtest_logs (
            run_id TEXT PRIMARY KEY, chain_key TEXT NOT NULL, address TEXT NOT NULL,
            head TEXT NOT NULL, decisions INTEGER NOT NULL
        ) WITHOUT ROWID
        """
    )


def _m011_lookahead(db: sqlite_utils.Database) -> None:
    """The look-ahead check (agent.plugins.lookahead): its verdict cached with the signal, and
    the quarantine of strategies caught looking ahead."""
    # `lookahead_samples`: bars re-checked when the row was computed (NULL: not checked, as for
    # shipped strategies, whose rows a third-party strategy's lookup then ignores).
    db.execute("ALTER TABLE signal_cache ADD COLUMN lookahead_samples INTEGER")
    # One row per strategy code caught looking ahead: the first bar found, on which data
    # (`series`), where the check ran (`source`: training, backtest, rewards, validation, ...).
    db.execute(
        """
        CREATE TABLE quarantine (
            code_hash TEXT NOT NULL PRIMARY KEY, strategy TEXT NOT NULL,
            first_bar INTEGER NOT NULL, first_bar_ms INTEGER, series TEXT,
            source TEXT NOT NULL, reason TEXT NOT NULL, detected_ms INTEGER NOT NULL
        ) WITHOUT ROWID
        """
    )


def _m012_failed_executions(db: sqlite_utils.Database) -> None:
    """A bar whose swap the chain refused: `failed` with the reason until an attempt succeeds."""
    # `status`: 'done' (replicated) or 'failed' (the last attempt reverted; the bar is still
    # owed to the chain, the decision record stands); `attempts`: attempts made, the
    # successful one included; `error`: the reason of the last failed attempt.
    db.execute(
        "ALTER TABLE service_executions ADD COLUMN status TEXT NOT NULL DEFAULT 'done' "
        "CHECK (status IN ('done', 'failed'))"
    )
    db.execute("ALTER TABLE service_executions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE service_executions ADD COLUMN error TEXT")


def _m013_dashboard_indexes(db: sqlite_utils.Database) -> None:
    """Indexes for the dashboard's paged reads (agent.dashboard): a decision's bar by its seq,
    backtest runs newest first."""
    db.execute("CREATE INDEX service_ticks_seq ON service_ticks (seq) WHERE seq IS NOT NULL")
    db.execute("CREATE INDEX backtest_runs_created ON backtest_runs (created_at, run_id)")


def _tick_terms(row: str) -> tuple[str, str, str]:
    """Return what a service_ticks row (`NEW`, `OLD`, the table) adds to decided, skipped,
    traded."""
    traded = (
        f"IFNULL({row}.status != 'skipped' "
        f"AND json_extract({row}.outcome, '$.trade.side') != 'none', 0)"
    )
    return f"({row}.status != 'skipped')", f"({row}.status = 'skipped')", traded


def _count_tick(row: str, sign: str) -> str:
    """Return the statements of a trigger body adding (`+`) or removing (`-`) a row's counts."""
    decided, skipped, traded = _tick_terms(row)
    return (
        "INSERT INTO service_tick_counts (market, decided, skipped, trades) "
        f"SELECT {row}.market, 0, 0, 0 WHERE NOT EXISTS "
        f"(SELECT 1 FROM service_tick_counts WHERE market = {row}.market); "
        f"UPDATE service_tick_counts SET decided = decided {sign} {decided}, "
        f"skipped = skipped {sign} {skipped}, trades = trades {sign} {traded} "
        f"WHERE market = {row}.market;"
    )


def _m014_tick_counts(db: sqlite_utils.Database) -> None:
    """Per market, the bars decided (intents included), skipped and traded (`agora status`).

    Kept by triggers in the transaction of every write to `service_ticks`, so that counting
    never parses the ticks' outcomes; filled here from the rows already written.
    """
    db.execute(
        """
        CREATE TABLE service_tick_counts (
            market TEXT PRIMARY KEY, decided INTEGER NOT NULL, skipped INTEGER NOT NULL,
            trades INTEGER NOT NULL
        ) WITHOUT ROWID
        """
    )
    decided, skipped, traded = _tick_terms("service_ticks")
    db.execute(
        "INSERT INTO service_tick_counts (market, decided, skipped, trades) "
        f"SELECT market, SUM({decided}), SUM({skipped}), SUM({traded}) "
        "FROM service_ticks GROUP BY market"
    )
    db.execute(
        "CREATE TRIGGER service_ticks_count_insert AFTER INSERT ON service_ticks "
        f"BEGIN {_count_tick('NEW', '+')} END"
    )
    db.execute(
        "CREATE TRIGGER service_ticks_count_delete AFTER DELETE ON service_ticks "
        f"BEGIN {_count_tick('OLD', '-')} END"
    )
    db.execute(
        "CREATE TRIGGER service_ticks_count_update "
        "AFTER UPDATE OF market, status, outcome ON service_ticks "
        f"BEGIN {_count_tick('OLD', '-')} {_count_tick('NEW', '+')} END"
    )


_ADD_VALUE = (
    "INSERT INTO service_tick_values (market, bar_time_ms, value_quote) "
    "SELECT NEW.market, NEW.bar_time_ms, json_extract(NEW.outcome, '$.value_quote') "
    "WHERE NEW.status != 'skipped';"
)
_DROP_VALUE = (
    "DELETE FROM service_tick_values WHERE market = OLD.market AND bar_time_ms = OLD.bar_time_ms;"
)


def _m015_tick_values(db: sqlite_utils.Database) -> None:
    """Each decided bar's portfolio value, the equity curve's points (agent.service.equity).

    A narrow copy of `$.value_quote` of every tick that is not skipped, kept by triggers in
    the transaction of every write to `service_ticks`, so the curve of a long service is one
    read of small rows instead of one parse of each tick's outcome.
    """
    db.execute(
        """
        CREATE TABLE service_tick_values (
            market TEXT NOT NULL, bar_time_ms INTEGER NOT NULL, value_quote REAL,
            PRIMARY KEY (market, bar_time_ms)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        "INSERT INTO service_tick_values (market, bar_time_ms, value_quote) "
        "SELECT market, bar_time_ms, json_extract(outcome, '$.value_quote') FROM service_ticks "
        "WHERE status != 'skipped'"
    )
    db.execute(
        f"CREATE TRIGGER service_ticks_value_insert AFTER INSERT ON service_ticks "
        f"BEGIN {_ADD_VALUE} END"
    )
    db.execute(
        f"CREATE TRIGGER service_ticks_value_delete AFTER DELETE ON service_ticks "
        f"BEGIN {_DROP_VALUE} END"
    )
    db.execute(
        "CREATE TRIGGER service_ticks_value_update "
        "AFTER UPDATE OF market, bar_time_ms, status, outcome ON service_ticks "
        f"BEGIN {_DROP_VALUE} {_ADD_VALUE} END"
    )


def _m016_decision_heads(db: sqlite_utils.Database) -> None:
    """Each decision's DecisionLog running head, so the head of any prefix is one read."""
    # `head`: keccak256(head of seq - 1 ‖ hash), as DecisionLog computes it, written with the
    # decision (agent.audit.outbox); NULL on decisions stored before this migration until the
    # service starts or the next decision is appended (`fill_heads`: the hashing lives in
    # agent.audit, above the store).
    db.execute("ALTER TABLE decisions ADD COLUMN head TEXT")


def _m017_tune(db: sqlite_utils.Database) -> None:
    """`agora tune` studies (agent.learn.tune): one row per study, one per trial.

    `document` is the whole study as `agora tune --json` prints it (space, trials, the chosen
    trial, its test split); the columns beside it are what listing and joining need.
    """
    db.execute(
        """
        CREATE TABLE tune_studies (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, space_path TEXT NOT NULL,
            space_hash TEXT NOT NULL, started_ms INTEGER NOT NULL, seconds REAL NOT NULL,
            backend TEXT NOT NULL, chosen_trial TEXT, chosen_model TEXT,
            document TEXT NOT NULL, report_path TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE tune_trials (
            study_id TEXT NOT NULL REFERENCES tune_studies(id), number INTEGER NOT NULL,
            trial_id TEXT NOT NULL, status TEXT NOT NULL, score REAL, params TEXT NOT NULL,
            model_ids TEXT NOT NULL, error TEXT,
            PRIMARY KEY (study_id, number)
        ) WITHOUT ROWID
        """
    )


MIGRATIONS: tuple[Migration, ...] = (
    _m001_candles,
    _m002_deployments,
    _m003_signals,
    _m004_backtest_runs,
    _m005_rewards,
    _m006_decisions,
    _m007_models,
    _m008_strategy_registrations,
    _m009_service,
    _m010_backtest_decisions,
    _m011_lookahead,
    _m012_failed_executions,
    _m013_dashboard_indexes,
    _m014_tick_counts,
    _m015_tick_values,
    _m016_decision_heads,
    _m017_tune,
)
