"""The StrategyRegistry contract as the contributor's commands read and write it, and the store's
record of every submission.

Each registration or retirement is written to the store's `strategy_registrations` table
before its transaction is sent (`insert_row`), then updated with the outcome (`update_row`),
so `agent.plugins.registry` can finish an interrupted submission. Views of the contract that
fail are raised as `ChainError`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from eth_utils import keccak, to_checksum_address

from agent.config import Settings
from agent.errors import ChainError, PluginError, TransactionReverted
from agent.store import Store

if TYPE_CHECKING:
    from web3.contract import Contract

    from agent.chain.backends import ChainBackend

ACTIVE, RETIRED = 1, 2
"""`StrategyRegistry.Status` values (0 is Unregistered)."""
STATUS_NAMES = {ACTIVE: "active", RETIRED: "retired"}
_LIVE_ROWS = ("registered", "installed")


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a strategy in the StrategyRegistry."""

    version: int
    code_hash: str
    registered_at: int
    """Block timestamp, in seconds since the epoch."""


@dataclass(frozen=True)
class RegisteredStrategy:
    """A strategy as the StrategyRegistry holds it.

    Attributes:
        strategy_id: keccak256 of the name, 0x-prefixed hex.
        name: the name, when known here (the chain stores only its hash).
        payout: the contributor's checksum payout address.
        status: "active" or "retired".
        versions: every version, oldest first; the last is the current one.
    """

    strategy_id: str
    name: str | None
    payout: str
    status: str
    versions: tuple[RegisteredVersion, ...]

    @property
    def version(self) -> int:
        return self.versions[-1].version

    @property
    def code_hash(self) -> str:
        return self.versions[-1].code_hash

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "version": self.version, "code_hash": self.code_hash}


def strategy_id(name: str) -> bytes:
    """Return a strategy's id in the StrategyRegistry: keccak256 of its name."""
    return bytes(keccak(text=name))


@dataclass(frozen=True)
class RegistrationContext:
    """The chain, the store, the StrategyRegistry and the strategy one transaction concerns."""

    chain: ChainBackend
    store: Store
    chain_key: str
    registry: Contract
    name: str
    code_hash: str
    payout: str


# --- registering ---------------------------------------------------------------------------
def register_version(context: RegistrationContext) -> tuple[str, int]:
    """Send the registration, recorded first as pending; return its tx hash and version."""
    sid, code_hash = strategy_id(context.name), bytes.fromhex(context.code_hash)
    registry = context.registry
    holder = bytes(call_view(registry.functions.strategyOfCodeHash(code_hash)))
    if holder not in (bytes(32), sid):
        raise PluginError(
            f"this exact code is registered as another strategy (id 0x{holder.hex()})"
        )
    row = insert_row(context, "pending")
    try:
        receipt = context.chain.transact(
            registry.functions.register(sid, context.payout, code_hash)
        )
    except ChainError as e:
        update_row(context.store, row, status="failed", error=str(e))
        reason = e.reason if isinstance(e, TransactionReverted) else None
        raise PluginError(f"registering {context.name!r} failed: {reason or e}") from e
    tx_hash, version = tx_hash_of(receipt), version_added(registry, receipt)
    update_row(context.store, row, status="registered", version=version, tx_hash=tx_hash)
    return tx_hash, version


# --- reading the chain ----------------------------------------------------------------------
def registered_strategies(
    settings: Settings,
    *,
    backend: ChainBackend | None = None,
    store: Store | None = None,
    names: Iterable[str] = (),
) -> list[RegisteredStrategy]:
    """Return every strategy in the StrategyRegistry, in registration order.

    Names are recovered from their ids for `names`, the store's records and the shipped
    strategies; others have `name=None`. Nothing is deployed: a chain without recorded
    contracts (the embedded one opened here, for instance) has none.
    """
    if backend is None and settings.chain.backend == "embedded":
        return []
    with open_session(settings, backend, store) as (chain, db):
        registry = recorded_registry(chain, db)
        if registry is None:
            return []
        from strategies import SHIPPED

        known = {*names, *registered_names(db, statuses=None), *(cls.name for cls in SHIPPED)}
        by_id = {strategy_id(n): n for n in known}
        count = int(call_view(registry.functions.strategyCount()))
        entries = []
        for index in range(count):
            sid = bytes(call_view(registry.functions.strategyIdAt(index)))
            entry = _read_id(registry, sid, by_id.get(sid))
            if entry is not None:
                entries.append(entry)
    return entries


def read_entry(registry: Contract, name: str) -> RegisteredStrategy | None:
    """Return the registry's entry for `name`, or None when it was never registered."""
    return _read_id(registry, strategy_id(name), name)


def _read_id(registry: Contract, sid: bytes, name: str | None) -> RegisteredStrategy | None:
    functions = registry.functions
    status = int(call_view(functions.statusOf(sid)))
    if status not in STATUS_NAMES:
        return None
    payout = call_view(functions.get(sid))[0]
    count = int(call_view(functions.versionCount(sid)))
    versions = []
    for index in range(count):
        code_hash, version, registered_at = call_view(functions.versionAt(sid, index))
        versions.append(RegisteredVersion(int(version), bytes(code_hash).hex(), int(registered_at)))
    return RegisteredStrategy(
        strategy_id="0x" + sid.hex(),
        name=name,
        payout=str(to_checksum_address(payout)),
        status=STATUS_NAMES[status],
        versions=tuple(versions),
    )


def status_of(registry: Contract, name: str) -> int:
    """Return the `StrategyRegistry.Status` of `name` (0: not registered)."""
    return int(call_view(registry.functions.statusOf(strategy_id(name))))


def call_view(function: Any) -> Any:
    """Call a view of the StrategyRegistry, raising a failed read as `ChainError`."""
    from web3.exceptions import Web3Exception

    try:
        return function.call()
    except (OSError, Web3Exception, ValueError) as e:
        label = getattr(function, "fn_name", "a registry view")
        raise ChainError(f"cannot read {label} from the StrategyRegistry: {e}") from e


def recorded_registry(chain: ChainBackend, store: Store) -> Contract | None:
    """Return the StrategyRegistry recorded for this chain (code checked), or None."""
    from agent.chain.contracts import load_artifact
    from agent.chain.deploy import chain_key, check_code

    key = chain_key(chain)
    record = store.read_deployments(key).get("strategy_registry")
    if record is None:
        return None
    check_code(chain, key, "strategy_registry", record.address, record.code_hash)
    abi = load_artifact("StrategyRegistry").abi
    return chain.w3.eth.contract(address=to_checksum_address(record.address), abi=abi)


def version_added(registry: Contract, receipt: Any) -> int:
    """Return the version a registration's receipt says was added."""
    from web3.logs import DISCARD

    events = registry.events.StrategyVersionAdded().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise ChainError(f"the registration emitted {len(events)} StrategyVersionAdded events")
    return int(events[0]["args"]["version"])


def tx_hash_of(receipt: Any) -> str:
    """Return a receipt's transaction hash as 0x-prefixed hex."""
    return "0x" + bytes(receipt["transactionHash"]).hex()


@contextmanager
def open_session(
    settings: Settings, backend: ChainBackend | None, store: Store | None
) -> Iterator[tuple[ChainBackend, Store]]:
    """Yield the chain and the store, opening (and afterwards closing) those not given."""
    with ExitStack() as stack:
        if store is None:
            store = stack.enter_context(Store(settings.data.database_path))
        if backend is None:
            from agent.chain.backends import connect

            backend = stack.enter_context(connect(settings.chain, settings.data.dir))
        yield backend, store


# --- the store's record ---------------------------------------------------------------------
def read_registrations(
    store: Store, *, name: str | None = None, chain_key: str | None = None
) -> list[dict[str, Any]]:
    """Return the recorded submissions and retirements, oldest first, optionally filtered."""
    sql, params = "SELECT * FROM strategy_registrations WHERE 1 = 1", []
    for column, value in (("name", name), ("chain_key", chain_key)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    cursor = store.db.execute(sql + " ORDER BY id", params)
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def unfinished_rows(
    store: Store, chain_key: str, name: str, code_hash: str
) -> list[dict[str, Any]]:
    """Return the rows of this code still pending or registered: not installed yet."""
    return [
        r
        for r in read_registrations(store, name=name, chain_key=chain_key)
        if r["code_hash"] == code_hash and r["status"] in ("pending", "registered")
    ]


def registered_names(store: Store, statuses: Sequence[str] | None = _LIVE_ROWS) -> set[str]:
    """Return the names with a row in `statuses` (None: any), on any chain."""
    rows = read_registrations(store)
    return {r["name"] for r in rows if statuses is None or r["status"] in statuses}


def insert_row(context: RegistrationContext, status: str) -> int:
    """Record a submission or retirement of `context` before acting; return its row id."""
    now = int(time.time() * 1000)
    with context.store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO strategy_registrations (chain_key, name, strategy_id, code_hash, payout, "
            "status, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                context.chain_key,
                context.name,
                "0x" + strategy_id(context.name).hex(),
                context.code_hash,
                context.payout,
                status,
                now,
                now,
            ],
        )
    return int(cursor.lastrowid or 0)


def update_row(store: Store, row: int, **values: Any) -> None:
    """Record the outcome of a row's transaction (only the columns that change)."""
    allowed = {"status", "version", "tx_hash", "installed_path", "error"}
    assert set(values) <= allowed, set(values) - allowed
    assignments = ", ".join(f"{column} = ?" for column in values)
    with store.transaction() as conn:
        conn.execute(
            f"UPDATE strategy_registrations SET {assignments}, updated_ms = ? WHERE id = ?",
            [*values.values(), int(time.time() * 1000), row],
        )
