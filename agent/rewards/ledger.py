"""The reward ledger in the store: epochs, their allocations, proofs and claims.

SQLite is the source of truth and the chain its replica: an epoch is written here before its
root is sent, and the chain is checked against it. Token amounts are stored as decimal text
(they exceed SQLite's 64-bit integers) and are Python ints everywhere else.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from agent.errors import StoreError, UsageError
from agent.rewards.scoring import Standing
from agent.store import Store

COMPUTED, PUBLISHED, EMPTY = "computed", "published", "empty"
"""Epoch status: recorded but not yet on the current chain; published; nothing to pay."""
REGISTRY, METADATA, TREASURY = "registry", "metadata", "treasury"
"""Where a payout address came from."""


@dataclass(frozen=True)
class Allocation:
    """One strategy's share of an epoch (or, with `strategy` None, the treasury's remainder)."""

    position: int
    strategy: str | None
    account: str
    account_source: str
    contribution: float | None
    std_error: float | None
    amount: int
    leaf_index: int | None = None
    leaf: str | None = None
    proof: tuple[str, ...] = ()
    claim_tx: str | None = None
    claimed_chain_key: str | None = None
    claimed_at: str | None = None

    @property
    def claimed(self) -> bool:
        return self.claimed_chain_key is not None


@dataclass(frozen=True)
class EpochRecord:
    """An epoch as stored: what was measured, what is paid, and where it was published."""

    epoch: int
    start_bar: int
    end_bar: int
    start_ms: int
    end_ms: int
    model_id: str | None
    metric: str
    v_all: float
    v_empty: float
    emission: int
    carry_in: int
    profit_share: int
    pool: int
    total: int
    remainder: int
    remainder_policy: str
    carry_out: int
    root: str | None
    status: str
    attribution: Mapping[str, Any]
    created_at: str
    chain_key: str | None = None
    publish_tx: str | None = None
    published_at: str | None = None
    allocations: tuple[Allocation, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data; token amounts as decimal strings (they exceed 2**53)."""
        data = asdict(self)
        for key in _INT_FIELDS:
            data[key] = str(data[key])
        for row in data["allocations"]:
            row["amount"] = str(row["amount"])
            row["proof"] = list(row["proof"])
            row["claimed"] = row["claimed_chain_key"] is not None
        return data


_EPOCH_FIELDS = [f.name for f in fields(EpochRecord) if f.name != "allocations"]
_ALLOCATION_FIELDS = [f.name for f in fields(Allocation)]
_EPOCH_COLUMNS = ", ".join(_EPOCH_FIELDS)
_ALLOCATION_COLUMNS = ", ".join(_ALLOCATION_FIELDS)
_INT_FIELDS = ("emission", "carry_in", "profit_share", "pool", "total", "remainder", "carry_out")


def write_epoch(store: Store, record: EpochRecord) -> None:
    """Record a computed epoch and its allocations in one transaction.

    Raises:
        StoreError: the epoch is already recorded.
    """
    values = asdict(record)
    values["attribution"] = json.dumps(record.attribution, sort_keys=True)
    for key in _INT_FIELDS:
        values[key] = str(values[key])
    rows = []
    for a in record.allocations:
        row = asdict(a)
        row["amount"] = str(a.amount)
        row["proof"] = json.dumps(list(a.proof)) if a.leaf else None
        rows.append([record.epoch, *row.values()])
    try:
        with store.transaction() as conn:
            marks = ", ".join("?" * len(_EPOCH_FIELDS))
            conn.execute(
                f"INSERT INTO reward_epochs ({_EPOCH_COLUMNS}) VALUES ({marks})",
                [values[c] for c in _EPOCH_FIELDS],
            )
            conn.executemany(
                f"INSERT INTO reward_allocations (epoch, {_ALLOCATION_COLUMNS}) "
                f"VALUES ({', '.join('?' * (len(_ALLOCATION_FIELDS) + 1))})",
                rows,
            )
    except sqlite3.IntegrityError as e:
        raise StoreError(f"reward epoch {record.epoch} is already recorded: {e}") from e


def read_epoch(store: Store, epoch: int) -> EpochRecord | None:
    """Return a recorded epoch with its allocations, or None."""
    row = store.db.execute(
        f"SELECT {_EPOCH_COLUMNS} FROM reward_epochs WHERE epoch = ?", [epoch]
    ).fetchone()
    if row is None:
        return None
    values: dict[str, Any] = dict(zip(_EPOCH_FIELDS, row, strict=True))
    values["attribution"] = json.loads(values["attribution"])
    for key in _INT_FIELDS:
        values[key] = int(values[key])
    allocations = []
    for raw in store.db.execute(
        f"SELECT {_ALLOCATION_COLUMNS} FROM reward_allocations WHERE epoch = ? ORDER BY position",
        [epoch],
    ).fetchall():
        item: dict[str, Any] = dict(zip(_ALLOCATION_FIELDS, raw, strict=True))
        item["amount"] = int(item["amount"])
        item["proof"] = tuple(json.loads(item["proof"])) if item["proof"] else ()
        allocations.append(Allocation(**item))
    return EpochRecord(**values, allocations=tuple(allocations))


def list_epochs(store: Store) -> list[int]:
    """Return the recorded epoch numbers, in order."""
    return [int(r[0]) for r in store.db.execute("SELECT epoch FROM reward_epochs ORDER BY 1")]


def carry_into(store: Store, epoch: int) -> int:
    """Return what the latest recorded epoch before `epoch` carried over (0 if none).

    Raises:
        UsageError: a later epoch is already recorded (the carry would be counted twice).
    """
    later = store.db.execute(
        "SELECT MIN(epoch) FROM reward_epochs WHERE epoch > ?", [epoch]
    ).fetchone()[0]
    if later is not None:
        raise UsageError(
            f"epoch {later} is already recorded, so epoch {epoch} can no longer be computed: "
            "epochs are computed in increasing order (a skipped epoch pays nothing)"
        )
    row = store.db.execute(
        "SELECT carry_out FROM reward_epochs WHERE epoch < ? ORDER BY epoch DESC LIMIT 1", [epoch]
    ).fetchone()
    return int(row[0]) if row else 0


def leaderboard(store: Store) -> list[dict[str, Any]]:
    """Return, per strategy (and the treasury's remainders), its standing and token totals.

    Each strategy's row has its summed per-epoch contributions, its latest standing
    (`accumulated` ± `accumulated_se`, `z`, `verdict`, `group`: see `agent.rewards.scoring`)
    and the tokens it earned, claimed (by Agora or seen claimed on-chain) and left unclaimed;
    amounts are ints. One read of the allocations and one of the latest scores, however many
    epochs are recorded.
    """
    board: dict[tuple[str | None, str], dict[str, Any]] = {}
    for strategy, account, contribution, amount, claimed in store.db.execute(
        "SELECT strategy, account, contribution, amount, claimed_chain_key IS NOT NULL "
        "FROM reward_allocations ORDER BY epoch, position"
    ):
        entry = board.setdefault(
            (strategy, account),
            {
                "strategy": strategy or "(remainder)",
                "account": account,
                "epochs": 0,
                "contribution": 0.0,
                "earned": 0,
                "claimed": 0,
            },
        )
        entry["epochs"] += 1
        entry["contribution"] += contribution or 0.0
        entry["earned"] += int(amount)
        entry["claimed"] += int(amount) if claimed else 0
    latest = latest_scores(store)
    rows = sorted(board.values(), key=lambda e: (-e["earned"], -e["contribution"], e["strategy"]))
    for row in rows:
        row["unclaimed"] = row["earned"] - row["claimed"]
        standing = latest.get(row["strategy"], (0, {}))[1]
        row["accumulated"] = standing.get("accumulated")
        row["accumulated_se"] = standing.get("accumulated_se")
        row["z"] = standing.get("z")
        row["verdict"] = standing.get("verdict")
        row["group"] = standing.get("group")
    return rows


def totals(store: Store) -> dict[str, int]:
    """Return the books over every recorded epoch: emitted, paid (minted), carried now.

    `emitted` counts each epoch's emission and profit share; `paid` the published totals, all
    minted into the distributor; `carried` what the latest epoch carried on. Conservation:
    emitted == paid + carried.
    """
    emitted = paid = carried = 0
    for emission, profit_share, total, carry_out in store.db.execute(
        "SELECT emission, profit_share, total, carry_out FROM reward_epochs ORDER BY epoch"
    ):
        emitted += int(emission) + int(profit_share)
        paid += int(total)
        carried = int(carry_out)
    return {"emitted": emitted, "paid": paid, "carried": carried}


def latest_scores(store: Store, before: int | None = None) -> dict[str, tuple[int, dict[str, Any]]]:
    """Return each strategy's score in the latest epoch (below `before`) that scored it.

    By name: (epoch, score) with the score as the epoch's attribution holds it (`scores`).
    SQLite picks the latest score of each name, so the attributions are not parsed here.
    """
    rows = store.db.execute(
        "SELECT json_extract(s.value, '$.name'), MAX(e.epoch), s.value "
        "FROM reward_epochs AS e, json_each(e.attribution, '$.scores') AS s "
        "WHERE e.epoch < ? GROUP BY 1",
        [2**62 if before is None else int(before)],
    ).fetchall()
    return {str(name): (int(epoch), dict(json.loads(score))) for name, epoch, score in rows}


def previous_standings(store: Store, epoch: int) -> dict[str, Standing]:
    """Return each strategy's latest standing recorded before `epoch` (see `scoring`)."""
    found: dict[str, Standing] = {}
    for name, (number, score) in latest_scores(store, epoch).items():
        se = float(score["accumulated_se"])
        found[name] = Standing(float(score["accumulated"]), se * se, number)
    return found


def mark_published(store: Store, epoch: int, chain_key: str, tx: str | None) -> None:
    """Record that an epoch's root is on the chain `chain_key` (sent in `tx`, or found there)."""
    store.db.execute(
        "UPDATE reward_epochs SET status = ?, chain_key = ?, publish_tx = ?, published_at = ? "
        "WHERE epoch = ?",
        [PUBLISHED, chain_key, tx, now(), epoch],
    )


def mark_claimed(store: Store, epoch: int, position: int, chain_key: str, tx: str | None) -> None:
    """Record that an allocation's leaf is claimed on `chain_key` (in `tx`, or found claimed)."""
    store.db.execute(
        "UPDATE reward_allocations SET claim_tx = ?, claimed_chain_key = ?, claimed_at = ? "
        "WHERE epoch = ? AND position = ?",
        [tx, chain_key, now(), epoch, position],
    )


def require_epoch(store: Store, epoch: int) -> EpochRecord:
    """Return a recorded epoch.

    Raises:
        UsageError: the epoch is not recorded.
    """
    record = read_epoch(store, epoch)
    if record is None:
        raise UsageError(f"reward epoch {epoch} is not recorded: run `agora rewards run-epoch`")
    return record


def now() -> str:
    """Return the current UTC time as ISO 8601 to the second (the ledger's timestamps)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
