"""The service's state and its crash-only protocol: start-up is recovery, intent before action.

Start-up (`ServiceRuntime.start`) is the only recovery path, and it is run by every start:
it takes the data directory's lock, prepares the market (history once, then the genesis
record), loads (or, when configured, trains) the live model, finishes any decision whose intent
was recorded but which did not reach the audit trail, then connects the chain and brings it up
to the records: on a chain that kept its state (the embedded chain file, anvil with a state
file, rpc) only what the crash left undone; on a non-persistent anvil, deploying and replaying
everything. An embedded chain file that is missing or corrupt while the store holds records
stops the start (`agora chain recover` rebuilds it); it is never rebuilt silently.

One bar (`decide_bar`): features and strategy signals up to the bar's close, the live model's
target exposure, the trade the pool mirror implies; all of it is written as the bar's intent
(keyed by the bar's open time, so a bar is decided once), then appended to the audit trail,
then logged, and only then replicated on the chain and sent to the DecisionLog. A crash at any
point leaves a state the next start completes without deciding or sending anything twice.

Two locks. `lock` guards the decisions (the store's shared connection, the policy, the feed);
the heartbeat and the tick need it, and nothing that waits on the chain holds it. `chain_lock`
guards the chain work (the replica, on a database connection of its own): replicating bars,
flushing the outbox, paying epochs. Every chain call has a deadline (`chain.rpc_timeout_s`), so
a hung node costs the chain thread one deadline per attempt while decisions go on. A node the
service owns that dies is restarted from its persisted state and the chain replicated from the
records; a node whose state is lost stops the service, naming `agora chain recover`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from agent.chain.node import ChainLost
from agent.config import Settings
from agent.errors import (
    AgoraError,
    ChainError,
    ModelNotFound,
    StoreError,
    TransactionReverted,
    UsageError,
)
from agent.learn.policy import BaselinePolicy, LoadedPolicy, load_policy
from agent.market.schema import SeriesKey, format_time_ms
from agent.service import ledger
from agent.service.decision import (
    BarOutcome,
    Genesis,
    carried_state,
    decide_outcome,
    decision_fields,
    ensure_genesis,
    write_hidden,
)
from agent.service.feeds import MarketFeed, make_feed
from agent.service.policy import bootstrap_model, live_model_id, policy_cache_dir
from agent.service.replica import ChainDiverged, ChainReplica, connect_chain
from agent.service.telemetry import ServiceLog, ServiceMetrics, iso_ms
from agent.store import Store

POLL_LIMIT = 500
"""Most candles one tick takes from the feed (the rest come at the next tick)."""


class ServiceRuntime:
    """Everything a running service holds; the scheduled jobs act on it under `lock`.

    Args:
        settings: the configuration.
        feed: the market feed (default: `make_feed` from the configuration).
        log: the structured log (default: stderr, or `service.log_file`).
        exchange: a ccxt client for the exchange feed (tests pass one at a fake exchange).
        now_ms: the exchange feed's clock.
        sleep: the exchange retries' backoff sleep.
        clock: the wall clock (Unix seconds) for the chain: swap deadlines and bringing a
            stale dev chain up to the present (tests warp it).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        feed: MarketFeed | None = None,
        log: ServiceLog | None = None,
        exchange: Any = None,
        now_ms: Any = None,
        sleep: Any = time.sleep,
        clock: Any = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.data_dir = Path(settings.data.dir)
        self.log = log or ServiceLog.for_settings(settings)
        self.metrics = ServiceMetrics()
        self.lock = threading.RLock()
        self.chain_lock = threading.RLock()
        """Guards the chain work (`replica`, `chain_store`); taken after `lock`, never before."""
        self.stopping = threading.Event()
        self.training = threading.Event()
        """Set while the retrain job trains (it stops at the next step once `stopping` is set)."""
        self.fatal: AgoraError | None = None
        self.store: Store | None = None
        self.chain_store: Store | None = None
        """The chain work's own connection to the database (used under `chain_lock`)."""
        self.feed = feed
        self.policy: LoadedPolicy | BaselinePolicy | None = None
        self._gate_reason: str | None = None
        self.strategies: list[Any] = []
        self.replica: ChainReplica | None = None
        self.backend: Any = None
        self.genesis: Genesis | None = None
        self.started_ms: int | None = None
        self.http_port: int | None = None
        self.chain_error: str | None = None
        self.last_tick_ms: int | None = None
        self.exhausted = False
        self._exchange = exchange
        self._now_ms = now_ms
        self._sleep = sleep
        self._lock_file: Any = None
        self._retry_chain_at = 0.0
        self._chain_failures = 0
        self._node_restarted = False
        self._config_hash: str | None = None

    # --- start-up = recovery ------------------------------------------------------------------
    @property
    def key(self) -> SeriesKey:
        assert self.feed is not None, "the runtime is not started"
        return self.feed.key

    @property
    def market(self) -> str:
        return str(self.key)

    def require_store(self) -> Store:
        if self.store is None:
            raise UsageError("the service runtime is not started")
        return self.store

    def start(self) -> None:
        """Start (and recover): lock, market, model, intents, chain. Idempotent per process.

        Raises:
            UsageError: another service holds this data directory.
            ModelError: no usable live model (the service must not trade blind).
            DataError, ConfigError, StoreError: the market or the store cannot be used.
            ChainDiverged: the chain holds a state the records do not explain.
        """
        from agent.audit.outbox import fill_heads
        from agent.audit.record import config_digest

        self.started_ms = ledger.now_ms()
        self._take_lock()
        self.store = ledger.open_shared_store(
            self.settings.data.database_path, on_busy=self._database_busy
        )
        self.chain_store = ledger.open_shared_store(
            self.settings.data.database_path, on_busy=self._database_busy
        )
        self._config_hash = config_digest(self.settings)
        self.record_run("starting")
        if self.feed is None:
            self.feed = make_feed(
                self.store,
                self.settings,
                exchange=self._exchange,
                now_ms=self._now_ms,
                sleep=self._sleep,
            )
        self.genesis = ensure_genesis(
            store=self.store, settings=self.settings, feed=self.feed, event=self.log.event
        )
        self._ensure_policy()
        recovered = self.recover_intents()
        fill_heads(self.store)  # after an upgrade: the audit trail's heads, once
        counts = ledger.tick_counts(self.store, self.market)
        self.metrics.set("agora_decisions_total", counts["decided"])
        self.metrics.set("agora_trades_total", counts["trades"])
        self.metrics.set("agora_bars_skipped_total", counts["skipped"])
        if self.settings.service.chain != self.settings.chain.backend:
            self.log.warning(
                "chain_mismatch",
                service_chain=self.settings.service.chain,
                chain_backend=self.settings.chain.backend,
                note="agora audit verify and agora rewards use chain.backend",
            )
        self.connect_chain()
        self.feed.restart_clock(self.after_ms())
        self.record_run("running")
        self.log.event(
            "started",
            pid=os.getpid(),
            market=self.market,
            feed=self.feed.kind,
            chain=self.settings.service.chain,
            chain_key=None if self.replica is None else self.replica.key,
            model=None if self.policy is None else self.policy.model_id,
            decided=counts["decided"],
            recovered_intents=recovered,
        )

    def _take_lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "service.lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UsageError(
                f"another `agora run` (pid {holder}) is using the data directory {self.data_dir}"
            ) from e
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def _database_busy(self, what: str, attempt: int, waited_s: float, retry_in_s: float) -> None:
        """Log a write waiting for another process's write lock: retried, not fatal."""
        self.log.warning(
            "database_busy",
            what=what,
            attempt=attempt,
            waited_s=round(waited_s, 1),
            retry_in_s=retry_in_s,
            note="another process holds the write lock; retrying",
        )

    def record_run(self, state: str, **extra: Any) -> None:
        """Record the run's state (`agora status` reads it): pid, feed, chain, endpoint."""
        store = self.require_store()
        previous = ledger.get_state(store, "run") or {}
        ledger.put_state(
            store,
            "run",
            {
                **{k: v for k, v in previous.items() if k in ("stopped_ms", "exit")},
                "pid": os.getpid(),
                "state": state,
                "started_ms": self.started_ms,
                "feed": self.settings.service.feed,
                "chain": self.settings.service.chain,
                "host": self.settings.service.host,
                "port": self.http_port,
                "market": None if self.feed is None else self.market,
                **extra,
            },
        )

    def _ensure_policy(self) -> None:
        store = self.require_store()
        if live_model_id(store) is None and self.settings.service.bootstrap_model:
            self.log.event(
                "bootstrap_training",
                timesteps=self.settings.service.bootstrap_timesteps,
                history_bars=None if self.genesis is None else self.genesis.first_index,
            )
            started = time.perf_counter()
            result = bootstrap_model(
                store,
                self.settings,
                store.read_candles(self.key),
                self.key,
                self.settings.service.bootstrap_timesteps,
                stop=self.stopping.is_set,
            )
            self.log.event(
                "bootstrap_trained",
                model=result.model_id,
                promoted=result.promoted,
                reason=result.reason,
                seconds=round(time.perf_counter() - started, 1),
            )
            if not result.promoted:
                self._gate_reason = f"the bootstrap model {result.model_id[:12]} {result.reason}"
        self.load_policy()

    def load_policy(self) -> None:
        """(Re)load the live model and the strategies it observes; a baseline if none is live.

        Raises:
            ModelError: the live model's file is missing, corrupt or unusable.
        """
        from agent.learn.policy import choose_baseline
        from agent.plugins.resolve import resolve_strategies

        store = self.require_store()
        policy: LoadedPolicy | BaselinePolicy
        try:
            policy = load_policy(store, "live", cache_dir=policy_cache_dir(self.settings))
        except ModelNotFound:
            reason = self._gate_reason or "no model has passed the promotion gate"
            policy = choose_baseline(store, self.settings, self.key, reason)
            self.log.event(
                "baseline_policy",
                policy=policy.model_id,
                reason=reason,
                validation=policy.scores,
                hint="train a better model (agora train); it trades once it passes the gate",
            )
        self.strategies = resolve_strategies(list(policy.spec.strategies), self.settings)
        if self.policy is not None and self.policy.model_id != policy.model_id:
            self.log.event("model_changed", previous=self.policy.model_id, model=policy.model_id)
        self.policy = policy
        ledger.put_state(
            store,
            "policy",
            {
                "kind": "baseline" if policy.is_baseline else "model",
                "id": policy.model_id,
                "reason": policy.reason if isinstance(policy, BaselinePolicy) else None,
            },
        )

    def refresh_policy(self) -> None:
        """Reload the policy when another model went live (a retrain passed the gate)."""
        current = live_model_id(self.require_store())
        if self.policy is None:
            self.load_policy()
        elif self.policy.is_baseline:
            if current is not None:
                self.load_policy()
        elif current != self.policy.model_id:
            self.load_policy()

    def recover_intents(self) -> int:
        """Append to the audit trail the decisions whose intent was recorded but not appended."""
        from agent.audit.outbox import append_decision, read_decisions, stored_count

        store = self.require_store()
        done = 0
        for tick in ledger.intents(store, self.market):
            assert tick.outcome is not None and tick.outcome.fields is not None
            count = stored_count(store)
            last = read_decisions(store, count - 1, 1) if count else []
            record = last[0].record() if last else None
            if (
                record is None
                or record.bar_time_ms != tick.bar_time_ms
                or record.market != self.market
            ):
                record = append_decision(store, tick.outcome.fields)
            ledger.mark_decided(store, self.market, tick.bar_time_ms, record.seq)
            done += 1
        return done

    # --- the chain ----------------------------------------------------------------------------
    def require_chain_store(self) -> Store:
        if self.chain_store is None:
            raise UsageError("the service runtime is not started")
        return self.chain_store

    def connect_chain(self) -> bool:
        """Connect, deploy and bring the chain up to the records; False if it is unreachable.

        Another process holding the chain (a command on the embedded chain) is an outage too:
        the chain waits for it, decisions do not.

        Raises:
            ChainDiverged: the chain holds what the records cannot explain.
            ChainLost: the chain's state is lost (`agora chain recover`).
            TransactionReverted: a deployment, swap or log transaction reverted.
        """
        with self.chain_lock:
            return self._connect_chain()

    def _connect_chain(self) -> bool:
        if self.replica is not None:
            return True
        if time.monotonic() < self._retry_chain_at:
            return False
        from agent.chain.deploy import deploy_all

        store = self.require_chain_store()
        assert self.genesis is not None
        try:
            if self.backend is None:
                self.backend = connect_chain(self.settings, store, self.log.event)
            deployment = deploy_all(self.backend, store, self.settings)
            replica = ChainReplica(
                self.backend,
                deployment,
                store,
                self.settings,
                market=self.market,
                initial_quote=self.genesis.initial_quote,
                genesis_pool=(self.genesis.pool[0], self.genesis.pool[1]),
                event=self.log.event,
                clock=self.clock,
            )
            # a node started from its state file may lack its last seconds: epochs included
            replica.recheck_rewards = self._node_restarted or self.backend.restored
            replica.ensure_genesis()
            started = time.perf_counter()
            replayed = replica.sync(stop=self.stopping.is_set)
            if not self.stopping.is_set():
                replica.verify()
            flushed = replica.flush_decisions(force=True)
            epochs = replica.replicate_rewards()
        except ChainLost:
            if self.backend is not None:  # a fresh node found without the records: drop it
                self.backend.discard_new_state = True
                with contextlib.suppress(Exception):
                    self.backend.close(timeout_s=5.0)
                self.backend = None
            raise
        except (ChainDiverged, TransactionReverted):
            raise  # not an outage: retrying would not change it
        except ChainError as e:
            self._chain_failed(e)
            return False
        self._node_restarted = False
        self.replica = replica
        self._chain_up()
        self.log.event(
            "chain_ready",
            chain_key=replica.key,
            deployed=list(deployment.deployed),
            replayed_bars=replayed,
            logged=None if flushed is None else flushed.sent,
            epochs=epochs,
            seconds=round(time.perf_counter() - started, 3),
        )
        return True

    def mark_chain_down(self, error: Exception) -> None:
        """Note a chain failure: decisions go on, replication waits (with backoff)."""
        self.metrics.inc("agora_chain_errors_total")
        self.metrics.set("agora_chain_reachable", 0)
        first = self.chain_error is None
        self.chain_error = str(error)
        self._chain_failures += 1
        self._retry_chain_at = time.monotonic() + min(
            10.0, 0.25 * 2 ** min(self._chain_failures, 6)
        )
        if first:
            self.log.warning("chain_unreachable", error=str(error)[:500])

    def _chain_up(self) -> None:
        if self.chain_error is not None:
            self.log.event("chain_recovered", after_failures=self._chain_failures)
        self.chain_error = None
        self._chain_failures = 0
        self._retry_chain_at = 0.0
        self.metrics.set("agora_chain_reachable", 1)

    def _chain_failed(self, error: Exception) -> None:
        """Note a chain failure; a node this service runs that died is released for a restart.

        The next attempt (`sync_chain`, after the backoff) reconnects through the same path as
        a start: the node is started again from its persisted state, the replica finds where
        that state stands and replicates the records (and the outbox) from there.
        """
        backend = self.backend
        if backend is not None and backend.node_dead():
            self.log.warning(
                "chain_node_died",
                chain=self.settings.service.chain,
                url=backend.url,
                note="restarting it from its persisted state and replaying the records",
            )
            with contextlib.suppress(Exception):
                backend.close(timeout_s=1.0)
            self.backend = None
            self.replica = None
            self._node_restarted = True
        self.mark_chain_down(error)

    def probe_chain(self, timeout_s: float) -> str | None:
        """Check that the chain's node answers within `timeout_s` (no lock, no waiting on jobs).

        A node that does not answer marks the chain down at once (`/health` degraded, with the
        cause); the chain thread finds out on its own only after its current call's deadline.

        Returns:
            Why the node failed, or None.
        """
        backend = self.backend
        if backend is None or self.stopping.is_set():
            return None
        cause = backend.probe(timeout_s)
        if cause is not None and self.chain_error is None and not self.stopping.is_set():
            self.mark_chain_down(ChainError(cause))
        return cause

    def sync_chain(self) -> None:
        """Replicate what the chain lacks and flush the outbox; an outage only delays it.

        Runs under `chain_lock` only: the decisions and the heartbeat never wait for it.

        Raises:
            ChainDiverged: the chain diverged from the records (the service must stop).
            ChainLost: the chain's state is lost (a restarted node without its state).
            AuditError: the DecisionLog diverged from the store.
        """
        with self.chain_lock:
            self._sync_chain()

    def _sync_chain(self) -> None:
        if self.replica is None:
            if not self._connect_chain():
                return
            assert self.replica is not None
        replica = self.replica
        if self.chain_error is not None:
            if time.monotonic() < self._retry_chain_at:
                return
            if not replica.backend.reachable():
                self._chain_failed(ChainError(f"{replica.key} does not answer"))
                return
        try:
            replica.sync(stop=self.stopping.is_set)
            report = replica.flush_decisions()
        except (ChainDiverged, TransactionReverted, ChainLost):
            raise  # not an outage: retrying would not change it
        except ChainError as e:
            self._chain_failed(e)
            return
        if report is not None and report.error is not None:
            self._chain_failed(ChainError(report.error))
            return
        self._chain_up()
        if report is not None and report.sent:
            self.log.event("decisions_logged", sent=report.sent, onchain=report.onchain)

    # --- one bar -------------------------------------------------------------------------------
    def after_ms(self) -> int:
        """Return the open time of the last bar handled (the history's last bar at first)."""
        assert self.genesis is not None
        last = ledger.last_tick(self.require_store(), self.market)
        return (
            self.genesis.after_ms if last is None else max(last.bar_time_ms, self.genesis.after_ms)
        )

    def accept_candle(self, candle: pd.DataFrame) -> str | None:
        """Validate and store one candle; return why it was refused (None when stored)."""
        from agent.errors import CandleError

        try:
            self.require_store().write_candles(self.key, candle)
        except CandleError as e:
            return f"bad candle: {e}"
        assert self.feed is not None
        write_hidden(self.require_store(), self.feed, candle["open_time"].to_numpy(dtype="int64"))
        return None

    def decide_bar(self, candles: pd.DataFrame, *, available_at: float | None = None) -> BarOutcome:
        """Decide the last bar of `candles` (every stored candle up to it) and record it.

        Returns:
            The bar's outcome, as recorded.
        """
        from agent.audit.outbox import append_decision
        from agent.dex.pool import MarketCoupledPool, PoolConfig
        from agent.env.spec import exposure
        from agent.plugins.market_data import build_market_data

        started = time.perf_counter() if available_at is None else available_at
        store = self.require_store()
        policy = self.policy
        assert policy is not None and self.genesis is not None and self.feed is not None
        candles = candles.reset_index(drop=True)
        t = len(candles) - 1
        times = candles["open_time"].to_numpy(dtype="int64")
        bar_ms, price = int(times[t]), float(candles["close"].iloc[t])
        # Only bar t's signal is used, computed from the candles up to t: causal by
        # construction, so the tick skips the look-ahead check (history builds run it).
        data, reasons = build_market_data(
            candles,
            self.strategies,
            hidden=self.feed.hidden(times),
            settings=self.settings.strategies,
            source="service",
            lookahead=False,
        )
        for name, reason in reasons.items():
            self.metrics.inc("agora_strategy_failures_total", strategy=name)
            self.log.warning(
                "strategy_failed", bar=format_time_ms(bar_ms), strategy=name, reason=reason[:300]
            )
        previous = ledger.last_decision(store, self.market)
        state = carried_state(previous, self.genesis)
        exposure_now = exposure(state["base"], state["quote"], price)
        observation = policy.spec.observe(data.features, data.signals, data.mask, t, exposure_now)
        target = policy.decide(observation)
        pool = MarketCoupledPool(PoolConfig.from_settings(self.settings.dex))
        outcome = decide_outcome(pool, state, price, target)
        fields = decision_fields(
            bar_ms=bar_ms,
            market=self.market,
            model_id=policy.record_id,
            config_hash=self._config_hash or "",
            observation=observation,
            names=data.strategy_names,
            signals=data.signals[t],
            masks=data.mask[t],
            target=target,
            trade=outcome.trade,
            fee_bps=pool.config.fee_bps,
            gas_per_swap=pool.config.gas_per_swap,
        )
        outcome = dataclasses.replace(
            outcome, fields=fields, observation=tuple(observation.tolist())
        )
        ledger.record_intent(store, self.market, bar_ms, outcome)
        record = append_decision(store, fields)
        ledger.mark_decided(store, self.market, bar_ms, record.seq)
        latency = time.perf_counter() - started
        self.metrics.observe_latency(latency)
        self.metrics.inc("agora_decisions_total")
        trade = outcome.trade
        if trade.side != "none":
            self.metrics.inc("agora_trades_total")
        self.metrics.set("agora_portfolio_value_quote", outcome.value_quote)
        self.metrics.set("agora_exposure", outcome.exposure_after)
        self.metrics.set("agora_last_bar_timestamp_seconds", bar_ms / 1000)
        self.log.event(
            "decision",
            seq=record.seq,
            bar=format_time_ms(bar_ms),
            bar_time_ms=bar_ms,
            price=price,
            target_exposure=target,
            side=trade.side,
            amount_in=str(trade.amount_in),
            amount_out=str(trade.amount_out),
            value_quote=round(outcome.value_quote, 6),
            masked=[n for n, m in zip(data.strategy_names, data.mask[t], strict=True) if not m],
            model=policy.model_id[:12],
            latency_ms=round(latency * 1000, 3),
        )
        return outcome

    def skip_bar(self, bar_ms: int, reason: str) -> None:
        """Record that a bar will not be decided, and say why."""
        if ledger.record_skip(self.require_store(), self.market, bar_ms, reason):
            self.metrics.inc("agora_bars_skipped_total")
            self.log.warning("bar_skipped", bar=format_time_ms(bar_ms), reason=reason[:500])

    # --- status ---------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Return the /health document (from memory: no I/O)."""
        outbox = int(self.metrics.get("agora_outbox_size"))
        last_bar = self.metrics.get("agora_last_bar_timestamp_seconds")
        status = "ok"
        if self.fatal is not None:
            status = "failed"
        elif self.stopping.is_set():
            status = "stopping"
        elif self.chain_error is not None:
            status = "degraded"
        elif self.replica is None:
            status = "starting"
        elif self.replica.failed_bar is not None:
            status = "degraded"  # a bar's swap reverted: the chain waits for it
        replica = self.replica
        return {
            "status": status,
            "pid": os.getpid(),
            "market": None if self.feed is None else self.market,
            "feed": self.settings.service.feed,
            "last_tick": iso_ms(self.last_tick_ms),
            "last_bar": None if not last_bar else format_time_ms(int(last_bar * 1000)),
            "lag_bars": int(self.metrics.get("agora_lag_bars")),
            "chain": {
                "backend": self.settings.service.chain,
                "chain_key": None if replica is None else replica.key,
                "reachable": self.chain_error is None and replica is not None,
                "error": self.chain_error,
                "synced_bar": None
                if replica is None or replica.synced_ms is None
                else format_time_ms(replica.synced_ms),
                "failed_bar": None if replica is None else replica.failed_bar,
            },
            "live_model": None if self.policy is None else self.policy.model_id,
            "outbox_size": outbox,
            "decisions": int(self.metrics.get("agora_decisions_total")),
            "trades": int(self.metrics.get("agora_trades_total")),
            "replay_finished": self.exhausted,
            "uptime_s": None
            if self.started_ms is None
            else round((ledger.now_ms() - self.started_ms) / 1000, 1),
            "fatal": None if self.fatal is None else str(self.fatal),
        }

    # --- stopping -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the running job to stop after its current bar."""
        self.stopping.set()

    def close(self, *, exit_code: int = 0, deadline: float | None = None) -> bool:
        """Flush what can be flushed, record the stop and release the chain and the store.

        Args:
            exit_code: the exit code to record.
            deadline: a `time.monotonic()` by which to be done; whatever would wait longer
                (a job still running, a node that does not stop) is left to the next start,
                which recovers it as after a crash.

        Returns:
            Whether everything was released (False: a job or the node was left behind).
        """
        deadline = time.monotonic() + 60.0 if deadline is None else deadline

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        decisions = self.lock.acquire(timeout=left())
        chain = self.chain_lock.acquire(timeout=left())
        clean = decisions and chain
        try:
            healthy = self.chain_error is None and self.fatal is None
            if chain and self.replica is not None and healthy:
                try:  # the bars decided since the chain job's last run, then the outbox
                    self.replica.sync(stop=lambda: left() < 1.0)
                    self.replica.flush_decisions(force=True)
                except AgoraError as e:
                    self.log.warning("final_flush_failed", error=str(e)[:300])
            if decisions and self.store is not None:
                with contextlib.suppress(StoreError):
                    self.record_run(
                        "stopped" if exit_code == 0 else "failed",
                        stopped_ms=ledger.now_ms(),
                        exit=exit_code,
                        error=None if self.fatal is None else str(self.fatal),
                    )
            if chain and self.backend is not None:
                try:
                    self.backend.close(timeout_s=min(15.0, left()))
                except Exception as e:
                    self.log.warning("chain_close_failed", error=str(e)[:300])
                if self.backend.node_left_running:
                    clean = False
                    self.log.warning(
                        "chain_node_left_running",
                        url=self.backend.url,
                        note="it did not stop in time (paused?); it writes its state and exits "
                        "on the SIGTERM it was sent once it runs again",
                    )
                self.backend = None
            if chain:
                self.replica = None
                if self.chain_store is not None:
                    self.chain_store.close()
                    self.chain_store = None
            if decisions and self.store is not None:
                self.store.close()
                self.store = None
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
        finally:
            if chain:
                self.chain_lock.release()
            if decisions:
                self.lock.release()
        if not clean:
            self.log.warning(
                "stop_incomplete",
                decisions_released=decisions,
                chain_released=chain,
                note="what was left is recovered by the next start, as after a crash",
            )
        self.log.event(
            "stopped", exit=exit_code, error=None if self.fatal is None else str(self.fatal)
        )
        self.log.flush()
        return clean
