"""`agora status`: the state of a running or stopped service, read from the store alone.

Whether a service is running is decided by the data directory's lock (held by a live `agora
run`, released by the kernel when it dies, even by SIGKILL); a run recorded as running whose
lock is free crashed. Everything else comes from the service's tables, the audit outbox, the
model registry and the reward epochs, so it works whether the service is up or not.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.market.schema import format_time_ms
from agent.service import ledger


def lock_holder(data_dir: Path) -> int | None:
    """Return the pid of the `agora run` holding the data directory, or None."""
    path = Path(data_dir) / "service.lock"
    if not path.exists():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _when(ms: Any) -> str | None:
    return None if ms is None else format_time_ms(int(ms))


def _failed_bar(store: Any, chain_key: str) -> dict[str, Any] | None:
    """The bar whose swap reverted on a chain and is still owed to it, for people."""
    failed = ledger.failed_execution(store, chain_key)
    if failed is None:
        return None
    return {
        "bar": _when(failed["bar_time_ms"]),
        "bar_time_ms": failed["bar_time_ms"],
        "attempts": failed["attempts"],
        "error": failed["error"],
        "at": _when(failed["at_ms"]),
    }


def status(settings: Settings, *, equity: Any = None) -> dict[str, Any]:
    """Return the service's state: run, market progress, chain, model, outbox, epochs, jobs.

    Args:
        settings: the configuration (its data directory's store is read).
        equity: the `equity_since_start` of this store when the caller already has it (the
            dashboard's live page), so the buy-and-hold rollout is not run twice; computed
            here when None.
    """
    from agent.audit.outbox import stored_count, unconfirmed_count
    from agent.rewards.ledger import list_epochs, read_epoch
    from agent.service.equity import equity_since_start
    from agent.service.policy import live_model_id
    from agent.store import Store

    data_dir = Path(settings.data.dir)
    holder = lock_holder(data_dir)
    path = settings.data.database_path
    if not path.exists():
        return {"state": "never started", "pid": None, "database": str(path)}
    with Store(path) as store:
        run = ledger.get_state(store, "run")
        genesis = ledger.get_state(store, "genesis")
        heartbeat = ledger.get_state(store, "heartbeat")
        if holder is not None:
            state = "running"
        elif run is None:
            state = "never started"
        elif run.get("state") in ("stopped", "failed"):
            state = str(run["state"])
        else:
            state = "crashed"
        market = None if genesis is None else str(genesis["market"])
        counts = {"decided": 0, "skipped": 0, "trades": 0}
        last_bar = last_decision = None
        skips: list[dict[str, Any]] = []
        if market is not None:
            counts = ledger.tick_counts(store, market)
            last = ledger.last_tick(store, market)
            last_bar = None if last is None else _when(last.bar_time_ms)
            decided = ledger.last_decision(store, market)
            if decided is not None and decided.outcome is not None:
                last_decision = {
                    "bar": _when(decided.bar_time_ms),
                    "seq": decided.seq,
                    "status": decided.status,
                    "target_exposure": decided.outcome.target,
                    "side": decided.outcome.trade.side,
                    "value_quote": decided.outcome.value_quote,
                    "decided_at": _when(decided.created_ms),
                }
            skips = [
                {"bar": _when(s.bar_time_ms), "reason": s.reason}
                for s in ledger.recent_skips(store, market)
            ]
        chains = [
            {
                "chain_key": key,
                "synced_bar": _when(synced),
                "at": _when(updated),
                "failed_bar": _failed_bar(store, key),
            }
            for key, synced, updated in store.db.execute(
                "SELECT chain_key, synced_bar_ms, updated_ms FROM service_chains "
                "ORDER BY updated_ms DESC LIMIT 3"
            ).fetchall()
        ]
        if equity is None:
            equity = equity_since_start(store, settings, points=2)
        epochs = list_epochs(store)
        last_epoch = None
        if epochs:
            record = read_epoch(store, epochs[-1])
            if record is not None:
                last_epoch = {
                    "epoch": record.epoch,
                    "status": record.status,
                    "total": str(record.total),
                    "chain_key": record.chain_key,
                }
        return {
            "state": state,
            "pid": holder if holder is not None else (run or {}).get("pid"),
            "database": str(path),
            "started": _when((run or {}).get("started_ms")),
            "stopped": _when((run or {}).get("stopped_ms")) if state != "running" else None,
            "exit": (run or {}).get("exit") if state != "running" else None,
            "error": (run or {}).get("error"),
            "feed": (run or {}).get("feed"),
            "chain": (run or {}).get("chain"),
            "http": None
            if state != "running" or not (run or {}).get("port")
            else f"http://{(run or {}).get('host')}:{(run or {}).get('port')}",
            "market": market,
            "decided": counts["decided"],
            "trades": counts["trades"],
            "skipped": counts["skipped"],
            "last_bar": last_bar,
            "last_decision": last_decision,
            "recent_skips": skips,
            "equity": None
            if equity is None or equity.live_value is None
            else {
                **equity.figures(),
                "since": _when(equity.times_ms[0]) if equity.times_ms else None,
            },
            "decisions_stored": stored_count(store),
            "outbox_size": unconfirmed_count(store),
            "live_model": live_model_id(store),
            "policy": ledger.get_state(store, "policy"),
            "chains": chains,
            "epochs_recorded": len(epochs),
            "last_epoch": last_epoch,
            "heartbeat": heartbeat,
            "jobs": ledger.read_jobs(store),
        }
