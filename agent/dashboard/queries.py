"""What the dashboard's pages show, read from the store through the library's own readers.

Every figure the CLI also prints comes from the function the CLI calls (`service.status`,
`service.equity`, `rewards.ledger.leaderboard`, `learn.registry.summary`, `backtest.report`),
formatted by the CLI's own formatters; what only the dashboard shows (a page of decisions with
their on-chain status, the epochs' proofs, the promotion history) is read here, one page at a
time (keyset on `seq` / `epoch`, or LIMIT/OFFSET), so a page stays fast on a large store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.audit.outbox import StoredDecision, read_decision
from agent.env.spec import BASE_SCALE, QUOTE_SCALE
from agent.market.schema import format_time_ms
from agent.service import ledger
from agent.store import Store

MAX_PAGE = 500
"""The most rows one page (or one API answer) holds."""


def clamp_limit(limit: int | None, default: int = 50) -> int:
    """Return a page size within 1 … MAX_PAGE."""
    return max(1, min(MAX_PAGE, default if limit is None else int(limit)))


# --- decisions ---------------------------------------------------------------------------------
_DECISION_SQL = (
    "SELECT d.seq, d.hash, d.status, d.tx_hash, d.block_number, d.attempts, d.last_error, "
    "d.record, t.bar_time_ms, t.outcome, t.market FROM decisions d "
    "LEFT JOIN service_ticks t ON t.seq = d.seq "
)


def current_chain(store: Store) -> str | None:
    """Return the chain the service replicated to most recently (None: none yet)."""
    row = store.db.execute(
        "SELECT chain_key FROM service_chains ORDER BY updated_ms DESC LIMIT 1"
    ).fetchone()
    if row is not None:
        return str(row[0])
    keys = [k for k in store.deployment_chain_keys() if "decision_log" in store.read_deployments(k)]
    return keys[0] if keys else None


def decision_log_address(store: Store, chain_key: str | None) -> str | None:
    """Return the DecisionLog recorded for a chain, or None."""
    if chain_key is None:
        return None
    record = store.read_deployments(chain_key).get("decision_log")
    return None if record is None else record.address


def _impact_bps(side: str, amount_in: int, amount_out: int, fee: int, price: float) -> float | None:
    """Return the swap's price impact in basis points of the bar's price, fee excluded."""
    net_in = amount_in - fee
    if side == "none" or amount_out <= 0 or net_in <= 0 or price <= 0:
        return None
    if side == "buy":  # quote in, base out
        paid = (net_in / QUOTE_SCALE) / (amount_out / BASE_SCALE)
        return (paid / price - 1.0) * 10_000
    received = (amount_out / QUOTE_SCALE) / (net_in / BASE_SCALE)
    return (1.0 - received / price) * 10_000


def _onchain(row: dict[str, Any], execution: dict[str, Any] | None) -> dict[str, Any]:
    """Return a decision's on-chain status: its trade's replication, then its DecisionLog entry."""
    if execution is not None and execution.get("status") == ledger.FAILED:
        return {"state": "failed", "reason": execution.get("error")}
    if row["status"] == "confirmed":
        return {"state": "confirmed", "tx_hash": row["tx_hash"], "block": row["block_number"]}
    reason = row["last_error"] if row["attempts"] else None
    return {"state": "pending", "reason": reason}


def _decision_row(raw: Any, executions: dict[int, dict[str, Any]]) -> dict[str, Any]:
    seq, digest, status, tx, block, attempts, error, record_json, bar_ms, outcome_json, _ = raw
    record = json.loads(record_json)
    trade = record.get("trade", {})
    bar_ms = int(record.get("bar_time_ms", bar_ms or 0)) if bar_ms is None else int(bar_ms)
    outcome = None if outcome_json is None else json.loads(outcome_json)
    side = str(trade.get("side", "none"))
    amount_in, amount_out, fee = (int(trade.get(k, 0)) for k in ("amount_in", "amount_out", "fee"))
    price = None if outcome is None else float(outcome["price"])
    row = {
        "seq": int(seq),
        "hash": digest,
        "bar_time": format_time_ms(bar_ms),
        "bar_time_ms": bar_ms,
        "target": int(record["target_exposure_e9"]) / 1e9,
        "side": side,
        "amount_in": str(amount_in),
        "amount_out": str(amount_out),
        "traded": _traded_text(side, amount_in, amount_out),
        "fee": str(fee),
        "fee_text": _fee_text(side, fee),
        "impact_bps": None
        if price is None
        else _impact_bps(side, amount_in, amount_out, fee, price),
        "gas_quote": None if outcome is None else int(outcome["trade"]["gas_quote"]) / QUOTE_SCALE,
        "gas_used": int(trade.get("gas_used", 0)),
        "value_quote": None if outcome is None else float(outcome["value_quote"]),
        "exposure": None if outcome is None else float(outcome["exposure_after"]),
        "status": status,
        "tx_hash": tx,
        "block_number": block,
        "last_error": error,
        "attempts": int(attempts),
    }
    row["onchain"] = _onchain(row, executions.get(bar_ms))
    return row


def _traded_text(side: str, amount_in: int, amount_out: int) -> str:
    if side == "buy":
        return f"{amount_in / QUOTE_SCALE:,.2f} quote -> {amount_out / BASE_SCALE:,.6f} base"
    if side == "sell":
        return f"{amount_in / BASE_SCALE:,.6f} base -> {amount_out / QUOTE_SCALE:,.2f} quote"
    return "-"


def _fee_text(side: str, fee: int) -> str:
    if side == "buy":
        return f"{fee / QUOTE_SCALE:,.4f} quote"
    if side == "sell":
        return f"{fee / BASE_SCALE:,.8f} base"
    return "0"


def _executions(store: Store, chain_key: str | None, bars: list[int]) -> dict[int, dict[str, Any]]:
    if chain_key is None or not bars:
        return {}
    marks = ",".join("?" * len(bars))
    rows = store.db.execute(
        "SELECT bar_time_ms, status, error, swap_tx, attempts FROM service_executions "
        f"WHERE chain_key = ? AND bar_time_ms IN ({marks})",
        [chain_key, *bars],
    ).fetchall()
    keys = ("status", "error", "swap_tx", "attempts")
    return {int(r[0]): dict(zip(keys, r[1:], strict=True)) for r in rows}


def _rows(store: Store, where: str, params: list[Any], order: str, limit: int) -> list[Any]:
    return store.db.execute(
        f"{_DECISION_SQL} {where} ORDER BY d.seq {order} LIMIT ?", [*params, limit]
    ).fetchall()


def _with_status(store: Store, raws: list[Any]) -> list[dict[str, Any]]:
    bars = []
    for raw in raws:
        bars.append(int(raw[8]) if raw[8] is not None else int(json.loads(raw[7])["bar_time_ms"]))
    executions = _executions(store, current_chain(store), bars)
    return [_decision_row(raw, executions) for raw in raws]


def decisions_before(store: Store, before: int | None, limit: int) -> list[dict[str, Any]]:
    """Return up to `limit` decisions with seq < `before` (the newest when None), newest first."""
    where, params = ("", []) if before is None else ("WHERE d.seq < ?", [int(before)])
    return _with_status(store, _rows(store, where, params, "DESC", clamp_limit(limit)))


def decisions_after(store: Store, after: int, limit: int) -> list[dict[str, Any]]:
    """Return up to `limit` decisions with seq > `after`, oldest first."""
    return _with_status(store, _rows(store, "WHERE d.seq > ?", [int(after)], "ASC", limit))


def last_seq(store: Store) -> int:
    """Return the newest decision's seq (-1: none)."""
    row = store.db.execute("SELECT MAX(seq) FROM decisions").fetchone()
    return -1 if row[0] is None else int(row[0])


@dataclass(frozen=True)
class DecisionDetail:
    """One decision: its row, its stored record and its inclusion in the DecisionLog."""

    row: dict[str, Any]
    stored: StoredDecision
    prev_hash: str
    chain_key: str | None
    decision_log: str | None
    swap_tx: str | None


def decision_detail(store: Store, seq: int) -> DecisionDetail | None:
    """Return a decision with its record and where it was logged, or None."""
    stored = read_decision(store, seq)
    if stored is None:
        return None
    rows = _with_status(store, _rows(store, "WHERE d.seq = ?", [seq], "ASC", 1))
    chain = current_chain(store)
    execution = _executions(store, chain, [rows[0]["bar_time_ms"]]).get(rows[0]["bar_time_ms"])
    return DecisionDetail(
        row=rows[0],
        stored=stored,
        prev_hash=str(json.loads(stored.record_json).get("prev_hash")),
        chain_key=chain,
        decision_log=decision_log_address(store, chain),
        swap_tx=None if execution is None else execution.get("swap_tx"),
    )


# --- contributors --------------------------------------------------------------------------------
def epochs_page(store: Store, before: int | None, limit: int) -> list[Any]:
    """Return up to `limit` recorded epochs below `before` (the newest when None), newest first."""
    from agent.rewards.ledger import read_epoch

    rows = store.db.execute(
        "SELECT epoch FROM reward_epochs WHERE epoch < ? ORDER BY epoch DESC LIMIT ?",
        [2**62 if before is None else int(before), clamp_limit(limit, 20)],
    ).fetchall()
    return [r for r in (read_epoch(store, int(e)) for (e,) in rows) if r is not None]


def board(store: Store) -> tuple[list[dict[str, Any]], dict[str, int], int]:
    """Return (`rewards.ledger.leaderboard`, `totals`, epochs recorded), as `agora rewards
    status` reads them (each one pass over the epochs, whatever their number)."""
    from agent.rewards.ledger import leaderboard, totals

    recorded = store.db.execute("SELECT COUNT(*) FROM reward_epochs").fetchone()[0]
    return leaderboard(store), totals(store), int(recorded)


def quarantine(store: Store) -> dict[str, dict[str, Any]]:
    """Return the quarantined strategy codes, by code hash."""
    rows = store.db.execute(
        "SELECT code_hash, strategy, first_bar, reason, source FROM quarantine"
    ).fetchall()
    return {
        r[0]: {"strategy": r[1], "first_bar": r[2], "reason": r[3], "source": r[4]} for r in rows
    }


# --- models ----------------------------------------------------------------------------------
def promotions(store: Store, offset: int, limit: int) -> list[dict[str, Any]]:
    """Return a page of the promotion history (every attempt of the gate), newest first."""
    rows = store.db.execute(
        "SELECT at_ms, model_id, previous_id, promoted, forced, candidate_score, live_score, "
        "reason FROM model_promotions ORDER BY at_ms DESC LIMIT ? OFFSET ?",
        [clamp_limit(limit), max(0, int(offset))],
    ).fetchall()
    keys = ("at_ms", "model_id", "previous_id", "promoted", "forced", "candidate", "live", "reason")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# --- backtests -------------------------------------------------------------------------------
def backtest_runs(store: Store, offset: int, limit: int) -> list[dict[str, Any]]:
    """Return a page of recorded backtest runs (newest first) with their summaries."""
    from agent.backtest.report import get_run

    rows = store.db.execute(
        "SELECT run_id FROM backtest_runs ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?",
        [clamp_limit(limit, 20), max(0, int(offset))],
    ).fetchall()
    return [get_run(store, str(r[0])) for r in rows]


def report_path(store: Store, run_id: str) -> str | None:
    """Return the HTML report the store records for a run (exact id), or None."""
    row = store.db.execute(
        "SELECT report_path FROM backtest_runs WHERE run_id = ?", [run_id]
    ).fetchone()
    return None if row is None or not row[0] else str(row[0])
