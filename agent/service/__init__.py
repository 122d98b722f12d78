"""The scheduled background service (`agora run`): trades bar by bar, retrains, pays rewards,
and survives crashes. See docs/service.md.

    feeds       MarketFeed: ReplayFeed (stored or synthetic candles, paced), ExchangeFeed (ccxt)
    policy      the live model (checked file, numpy weights) and the environment's observation
    ledger      the service's tables: per-bar intents and decisions, chains, jobs, state
    decision    the genesis the records start from; one bar's outcome and record, as data
    replica     ChainReplica: the chain kept equal to the records (pool, balances, log, rewards)
    runtime     ServiceRuntime: crash-only start-up (= recovery) and the per-bar protocol
    jobs        tick, retrain, reward_epoch, heartbeat: plain functions of a runtime
    scheduler   the APScheduler jobs, signals and the run loop (`run`)
    http        /health (JSON) and /metrics (Prometheus text) on a loopback port
    telemetry   the JSON-lines log and the metrics registry
    status      `agora status`, from the store alone

Errors: `ModelError` (no usable live model), `StoreError` (the database or the disk),
`AuditError` (the trail diverged), `ChainDiverged` (a `ChainError`: the chain holds what the
records cannot explain) and `ConfigError` stop the service; exchange errors, chain outages and
failing strategies do not.
"""

from __future__ import annotations

from typing import Any

from agent.config import Settings


def run(settings: Settings, *, once: bool = False, http_server: Any = None) -> int:
    """Run the service until SIGTERM / SIGINT (`agora run`); with `once`, run each job once.

    `http_server` builds the loopback endpoint (runtime, host, port) -> server; the default
    serves /health and /metrics (`agent.service.http.HealthServer`); `agora run` passes the
    dashboard's when `service.dashboard` is on.

    Returns:
        The exit code (0).

    Raises:
        AgoraError: start-up failed or a job failed fatally (after a clean stop).
    """
    from agent.service.scheduler import run_service

    return run_service(settings, once=once, http_server=http_server)


def status(settings: Settings) -> dict[str, Any]:
    """Return the state of the service of this configuration's data directory (`agora status`)."""
    from agent.service.status import status as read_status

    return read_status(settings)


__all__ = ["run", "status"]
