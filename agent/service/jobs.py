"""The scheduled jobs, as plain functions of a started `ServiceRuntime` (tested directly).

    tick          poll the feed; validate, store and decide each new closed bar (one at a time,
                  stopping between bars when asked); run alone (`agora run --once`, tests) it
                  then replicates too
    chain         replicate the decided bars on the chain and flush the outbox (the scheduler
                  runs it in a thread of its own, outside the decisions' lock: a hung node
                  delays the chain, never a decision)
    retrain       after `service.retrain_every_bars` decided bars: train on the newest data;
                  the model goes live only through the promotion gate
    reward_epoch  once an epoch's bars are complete: attribution, payout, Merkle root,
                  publish, optional auto-claim (`agent.rewards.epochs.run_epoch`)
    heartbeat     probe the chain's node (with a deadline shorter than the heartbeat), refresh
                  the gauges, write the status snapshot

`run_job` wraps each run: it records the run in `service_jobs`, logs failures, and sorts them.
A failure that makes trading unsafe or impossible (the model, the store, the audit trail, a
chain that diverged, an unexpected bug) is fatal: the runtime is marked failed and the service
stops with exit code 1, to be restarted (crash-only) by its supervisor. Exchange errors, chain
outages and failing strategies are not: they cost a bar, delay the chain, or mask a signal.
"""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.chain.node import ChainLost
from agent.errors import (
    AgoraError,
    AuditError,
    ConfigError,
    DataError,
    ModelError,
    StoreError,
    TrainingInterrupted,
    TransactionReverted,
    UsageError,
)
from agent.market.schema import format_time_ms
from agent.service import ledger
from agent.service.replica import ChainDiverged
from agent.service.runtime import POLL_LIMIT, ServiceRuntime
from agent.store import Store

JOB_IDS: tuple[str, ...] = ("tick", "chain", "retrain", "reward_epoch", "heartbeat")

FATAL_ERRORS: tuple[type[BaseException], ...] = (
    ModelError,
    StoreError,
    AuditError,
    ConfigError,
    UsageError,
    DataError,
    ChainDiverged,
    ChainLost,
    TransactionReverted,
)
"""Errors after which the service must not go on trading."""

JOB_FATAL: dict[str, tuple[type[BaseException], ...]] = {
    "tick": FATAL_ERRORS,
    "chain": FATAL_ERRORS,
    "heartbeat": FATAL_ERRORS,
    "reward_epoch": (StoreError, AuditError, ChainDiverged, ChainLost),
    "retrain": (StoreError,),
}
"""Per job, the errors that stop the service; a failed retrain or epoch is logged and retried."""


@dataclass(frozen=True)
class JobResult:
    """What one job run did.

    Attributes:
        job: the job id.
        status: 'ok' (did something), 'idle' (nothing to do), 'failed' or 'fatal'.
        detail: a short human summary.
        bars: bars decided (tick) or epochs run (reward_epoch).
    """

    job: str
    status: str
    detail: str = ""
    bars: int = 0


def run_job(
    runtime: ServiceRuntime,
    job: str,
    fn: Callable[[ServiceRuntime], JobResult],
    *,
    fatal: tuple[type[BaseException], ...] | None = None,
) -> JobResult:
    """Run one job: skip it while stopping, record it, and classify what it raised.

    Args:
        runtime: the started runtime.
        job: the job id (picks the fatal errors, `JOB_FATAL`, unless `fatal` is given).
        fn: the job function.
        fatal: the errors that stop the service.
    """
    fatal = JOB_FATAL.get(job, FATAL_ERRORS) if fatal is None else fatal
    if runtime.stopping.is_set() or runtime.fatal is not None:
        return JobResult(job, "idle", "stopping")
    started = ledger.now_ms()
    try:
        result = fn(runtime)
    except Exception as e:
        if runtime.stopping.is_set() and (runtime.store is None or runtime.chain_store is None):
            # the stop released the store under a job that was still running: not a failure
            return JobResult(job, "idle", f"cut short by the stop ({type(e).__name__})")
        result = _classify(runtime, job, fatal, e)
    if result.status != "idle" and runtime.store is not None:
        try:
            with runtime.lock:
                if runtime.store is not None:
                    ledger.job_run(runtime.store, job, started, result.status, result.detail)
        except (StoreError, sqlite3.Error) as e:
            if runtime.fatal is None:
                _fatal(runtime, job, StoreError(str(e)))
    return result


def _classify(
    runtime: ServiceRuntime, job: str, fatal: tuple[type[BaseException], ...], e: Exception
) -> JobResult:
    """Sort a job's exception: fatal (the service stops) or a failure it goes on after."""
    if isinstance(e, fatal):
        return _fatal(runtime, job, e)
    if isinstance(e, sqlite3.Error):
        cause = ledger.root_cause(e)
        return _fatal(runtime, job, StoreError(f"the database failed: {cause}"))
    if isinstance(e, AgoraError):
        runtime.log.warning("job_failed", job=job, error=str(e)[:500])
        return JobResult(job, "failed", str(e)[:500])
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return _fatal(runtime, job, StoreError(f"the disk is full: {e}"))
    runtime.log.error("job_crashed", exc_info=True, job=job, error=repr(e)[:500])
    return _fatal(runtime, job, AgoraError(f"{job} crashed: {type(e).__name__}: {e}"))


def _fatal(runtime: ServiceRuntime, job: str, error: BaseException) -> JobResult:
    if isinstance(error, StoreError):
        error = StoreError(_with_sqlite_cause(error))
    agora = error if isinstance(error, AgoraError) else AgoraError(str(error))
    runtime.fatal = agora
    runtime.stopping.set()
    runtime.log.error("fatal", job=job, error=str(error)[:1000], kind=type(error).__name__)
    return JobResult(job, "fatal", str(error)[:500])


def _with_sqlite_cause(error: BaseException) -> str:
    """Return the error's message with the SQLite error behind it (a full disk), if hidden."""
    text = str(error)
    cause = error.__cause__ or error.__context__
    while cause is not None:
        if isinstance(cause, sqlite3.Error):
            root = str(ledger.root_cause(cause))
            return text if root in text else f"{text} ({root})"
        cause = cause.__cause__ or cause.__context__
    return text


# --- tick -----------------------------------------------------------------------------------------
def tick(
    runtime: ServiceRuntime, *, max_bars: int | None = None, replicate: bool = True
) -> JobResult:
    """Decide every new closed bar the feed has (at most `max_bars`), then replicate on-chain.

    The bars are decided under the runtime's lock; the chain is replicated after it is
    released (`replicate`: the scheduler runs the `chain` job on a thread of its own instead).
    """
    result = _decide(runtime, max_bars)
    if replicate and not runtime.stopping.is_set():
        runtime.sync_chain()
        with runtime.lock:
            if runtime.store is not None:
                refresh_gauges(runtime)
    return result


def _decide(runtime: ServiceRuntime, max_bars: int | None) -> JobResult:
    with runtime.lock:
        if runtime.stopping.is_set():
            return JobResult("tick", "idle", "stopping")
        store, feed = runtime.require_store(), runtime.feed
        assert feed is not None
        runtime.last_tick_ms = ledger.now_ms()
        runtime.metrics.inc("agora_ticks_total")
        runtime.metrics.set("agora_last_tick_timestamp_seconds", runtime.last_tick_ms / 1000)
        runtime.refresh_policy()
        after = runtime.after_ms()
        batch = feed.poll(after, POLL_LIMIT if max_bars is None else max_bars)
        if batch.error is not None:
            runtime.metrics.inc("agora_feed_errors_total")
            runtime.log.warning(
                "bar_delayed",
                bar=format_time_ms(after + feed.timeframe_ms),
                reason=batch.error[:500],
                note="retried at the next poll while the bar is in time",
            )
        decided = skipped = 0
        for position in range(len(batch.candles)):
            if runtime.stopping.is_set():
                break
            available = time.perf_counter()
            candle = batch.candles.iloc[position : position + 1]
            bar_ms = int(candle["open_time"].iloc[0])
            if bar_ms <= after:
                continue
            reason = runtime.accept_candle(candle)
            if reason is None:
                reason = feed.late_reason(bar_ms)
            if reason is not None:
                runtime.skip_bar(bar_ms, reason)
                skipped += 1
            else:
                runtime.decide_bar(
                    store.read_candles(runtime.key, end_ms=bar_ms), available_at=available
                )
                decided += 1
            after = bar_ms
        if batch.exhausted and not runtime.exhausted and not len(batch.candles):
            runtime.exhausted = True
            runtime.log.event("replay_finished", last_bar=format_time_ms(after))
        refresh_gauges(runtime, after)
    if decided or skipped:
        return JobResult("tick", "ok", f"{decided} decided, {skipped} skipped", decided)
    return JobResult("tick", "idle", batch.error or "no new bar")


# --- chain --------------------------------------------------------------------------------------
def replicate(runtime: ServiceRuntime) -> JobResult:
    """Replicate the decided bars the chain lacks and flush the outbox (under the chain lock)."""
    runtime.sync_chain()
    replica = runtime.replica
    if runtime.chain_error is not None:
        return JobResult("chain", "idle", f"waiting for the chain: {runtime.chain_error}"[:500])
    synced = None if replica is None else replica.synced_ms
    return JobResult("chain", "idle", f"replicated up to {synced}")


def refresh_gauges(runtime: ServiceRuntime, after_ms: int | None = None) -> None:
    """Update lag, outbox and replication gauges from the store (call under the lock)."""
    from agent.audit.outbox import unconfirmed_count

    store = runtime.require_store()
    assert runtime.feed is not None
    after = runtime.after_ms() if after_ms is None else after_ms
    runtime.metrics.set("agora_lag_bars", runtime.feed.lag_bars(after))
    runtime.metrics.set("agora_outbox_size", unconfirmed_count(store))
    replica = runtime.replica
    synced = None if replica is None else replica.synced_ms
    pending = ledger.count_decisions_after(store, runtime.market, synced)
    runtime.metrics.set("agora_chain_pending_bars", pending)


# --- retrain --------------------------------------------------------------------------------------
def retrain(runtime: ServiceRuntime) -> JobResult:
    """Train on the newest data once enough bars were decided; promote through the gate.

    Training runs outside the runtime's lock, on its own database connection, so ticks go on.
    """
    every = runtime.settings.service.retrain_every_bars
    if every <= 0:
        return JobResult("retrain", "idle", "retraining is off (service.retrain_every_bars: 0)")
    with runtime.lock:
        store = runtime.require_store()
        decided = ledger.tick_counts(store, runtime.market)["decided"]
        last = ledger.get_state(store, "retrain") or {"decided": 0}
        key = runtime.key
    if decided - int(last["decided"]) < every:
        return JobResult("retrain", "idle", f"{decided - int(last['decided'])} of {every} bars")
    from agent.learn.dataset import dataset_from_candles
    from agent.learn.registry import promote
    from agent.learn.train import train
    from agent.store import Store

    started = time.perf_counter()
    runtime.log.event("retraining", decided=decided, timesteps=runtime.settings.agent.timesteps)
    runtime.training.set()
    try:
        with Store(runtime.settings.data.database_path) as own:
            candles = own.read_candles(key)
            dataset = dataset_from_candles(candles, runtime.settings, key=key, store=own)
            # a quarantined or failing plugin is masked, never a reason to stop retraining
            report = train(
                runtime.settings,
                own,
                dataset=dataset,
                seeds=1,
                allow_masked_strategies=True,
                stop=runtime.stopping.is_set,
            )
            model_id = report.runs[0].model_id
            result = promote(own, runtime.settings, model_id)
    except TrainingInterrupted:
        runtime.log.event("retrain_abandoned", note="the next start retrains if still due")
        return JobResult("retrain", "idle", "abandoned: the service is stopping")
    finally:
        runtime.training.clear()
    state = {
        "decided": decided,
        "model": model_id,
        "promoted": result.promoted,
        "reason": result.reason,
        "at_ms": ledger.now_ms(),
    }
    with runtime.lock:
        ledger.put_state(runtime.require_store(), "retrain", state)
    runtime.log.event(
        "retrained",
        model=model_id,
        promoted=result.promoted,
        reason=result.reason,
        bars=len(candles),
        seconds=round(time.perf_counter() - started, 1),
    )
    return JobResult("retrain", "ok", f"{model_id[:12]}: {result.reason}")


# --- reward epochs --------------------------------------------------------------------------------
def next_epoch(runtime: ServiceRuntime, store: Store | None = None) -> tuple[int, bool]:
    """Return the next epoch to run and whether its bars are complete.

    Reads `store` (default: the runtime's own connection, under its lock).
    """
    from agent.rewards.ledger import list_epochs

    store = runtime.require_store() if store is None else store
    assert runtime.genesis is not None
    bars_per_epoch = runtime.settings.rewards.epoch_bars
    recorded = list_epochs(store)
    first = runtime.genesis.first_index // bars_per_epoch
    epoch = max(first, recorded[-1] + 1) if recorded else first
    bars = ledger.count_candles(store, runtime.key)
    return epoch, (epoch + 1) * bars_per_epoch <= bars - 1


def reward_epoch(runtime: ServiceRuntime) -> JobResult:
    """Run the next reward epoch once its bars are complete (publish what a chain lacks first)."""
    from agent.rewards.epochs import run_epoch

    if not runtime.settings.service.pay_rewards:
        return JobResult("reward_epoch", "idle", "paying rewards is off (service.pay_rewards)")
    with runtime.chain_lock:  # on the chain's own connection: the decisions go on meanwhile
        replica = runtime.replica
        if replica is None or runtime.chain_error is not None:
            return JobResult("reward_epoch", "idle", "waiting for the chain")
        store = runtime.require_chain_store()
        replica.replicate_rewards()
        epoch, complete = next_epoch(runtime, store)
        if not complete:
            return JobResult("reward_epoch", "idle", f"epoch {epoch} is not complete yet")
        started = time.perf_counter()
        inputs = epoch_inputs(runtime, epoch, store)
        run = run_epoch(
            epoch,
            store=store,
            backend=replica.backend,
            deployment=replica.deployment,
            settings=runtime.settings,
            **inputs,
        )
        record = run.record
        runtime.metrics.inc("agora_epochs_paid_total")
        runtime.log.event(
            "epoch_paid",
            epoch=epoch,
            bars=[record.start_bar, record.end_bar],
            status=record.status,
            total=str(record.total),
            root=record.root,
            publish_tx=run.published_tx,
            allocations={a.strategy or "(remainder)": str(a.amount) for a in record.allocations},
            claims=len(run.claims),
            seconds=round(time.perf_counter() - started, 2),
        )
    return JobResult("reward_epoch", "ok", f"epoch {epoch}: {record.status}", 1)


def epoch_inputs(runtime: ServiceRuntime, epoch: int, store: Store | None = None) -> dict[str, Any]:
    """Return `run_epoch`'s inputs for `epoch`: the live policy on what it saw, read from `store`
    (default: the runtime's own connection, under its lock).

    The epoch's signals are the ones the decision records hold (`inputs_for_epoch`). While the
    service trades a baseline policy, the epoch is marked as the baseline's, so its pool is
    carried rather than paid.
    """
    from agent.rewards.inputs import inputs_for_epoch, load_inputs

    policy = runtime.policy
    assert policy is not None
    store = runtime.require_store() if store is None else store
    inputs = load_inputs(
        runtime.settings, store, policy=policy, strategies=runtime.strategies, key=runtime.key
    )
    inputs = inputs_for_epoch(inputs, store, epoch, runtime.settings.rewards.epoch_bars)
    values = inputs.run_arguments()
    # an epoch traded by a baseline is carried, not attributed (no agent, no attribution)
    values["baseline"] = policy.name if policy.is_baseline else None
    return values


# --- heartbeat ------------------------------------------------------------------------------------
def probe_timeout_s(runtime: ServiceRuntime) -> float:
    """Return how long the heartbeat waits for the node: within the heartbeat and the RPC deadline.

    So a node that stops answering shows as degraded within one heartbeat.
    """
    heartbeat_s = runtime.settings.service.heartbeat_s
    return max(0.2, min(runtime.settings.chain.rpc_timeout_s, heartbeat_s / 2))


def heartbeat(runtime: ServiceRuntime) -> JobResult:
    """Probe the chain, refresh the gauges and store the status snapshot for `agora status`.

    The probe holds no lock and has its own short deadline: a hung node is reported within
    one heartbeat, whatever the chain thread is waiting on.
    """
    runtime.probe_chain(probe_timeout_s(runtime))
    with runtime.lock:
        store = runtime.require_store()
        refresh_gauges(runtime)
        snapshot = runtime.health()
        snapshot["at_ms"] = ledger.now_ms()
        ledger.put_state(store, "heartbeat", snapshot)
    return JobResult("heartbeat", "ok", snapshot["status"])
