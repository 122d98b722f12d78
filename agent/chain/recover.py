"""Recovering the embedded chain from the store, explicitly, and refusing to do it silently.

The embedded chain lives in its own file (`agent.chain.embedded`), so the store and the chain
are two records that can be compared. When the chain file is lost, replaced or corrupt,
`require_chain_for_store` stops the service and the audit instead of rebuilding the chain from
the store; `recover` is the one place that rebuilds it: it moves the old file aside (never
deletes it), starts a fresh chain, deploys, and replays the store (the service's bars, the
decision log, reward epochs). A replayed chain proves only that the store is self-consistent,
not that its decisions were published when they were made; `recover` says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.chain.backends import ChainBackend, EmbeddedBackend, embedded_state_dir
from agent.chain.embedded import (
    RECOVER_HINT,
    ChainFileLock,
    ChainLost,
    chain_file,
    chain_files,
)
from agent.config import Settings
from agent.errors import UsageError
from agent.store import Store

CANNOT_PROVE = (
    "a replayed chain proves only that the store is self-consistent (every record hashes to its "
    "entry and links to the one before); it cannot prove that these decisions were published "
    "on-chain when they were made, since the store itself wrote them onto this chain just now"
)


@dataclass(frozen=True)
class ChainHistory:
    """What a store says about the chains its records were sent to."""

    decisions: int
    chain_keys: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """Whether nothing was recorded yet (a fresh data directory)."""
        return self.decisions == 0 and not self.chain_keys


def chain_history(store: Store) -> ChainHistory:
    """Return the store's decision count and the chain keys it holds deployments for."""
    from agent.audit.outbox import stored_count

    rows = store.db.execute("SELECT DISTINCT chain_key FROM deployments ORDER BY chain_key")
    return ChainHistory(stored_count(store), tuple(str(r[0]) for r in rows.fetchall()))


def require_chain_for_store(backend: ChainBackend, store: Store) -> None:
    """Refuse an embedded chain file that does not hold the store's records.

    A persistent embedded chain with no deployment recorded under its key, while the store
    already holds decisions or deployments, is a chain that was lost and recreated (or
    replaced): the records would otherwise be replayed onto it silently.

    Raises:
        ChainLost: naming the chain, what the store holds and `agora chain recover`.
    """
    from agent.chain.deploy import chain_key

    if not (backend.persistent and backend.name == "embedded"):
        return
    key = chain_key(backend)
    if store.read_deployments(key):
        return
    history = chain_history(store)
    if history.empty:
        return
    where = ", ".join(history.chain_keys) or "no chain"
    raise ChainLost(
        f"the embedded chain {getattr(backend, 'state_path', None)} ({key}) does not hold this "
        f"store's records ({history.decisions} decisions; contracts recorded on {where}): the "
        f"chain file was lost or replaced; {RECOVER_HINT}"
    )


def open_embedded_for_store(state_dir: Path, store: Store) -> EmbeddedBackend:
    """Open the data directory's embedded chain; create it only for a store with no records.

    Raises:
        ChainLost: the chain file is missing or corrupt while the store holds records, or it is
            another chain than the one the records were sent to.
        ChainLocked: another process has the chain open.
    """
    backend = EmbeddedBackend(state_dir, create=chain_history(store).empty)
    try:
        require_chain_for_store(backend, store)
    except BaseException:
        backend.close()
        raise
    return backend


@dataclass
class RecoveryReport:
    """What `recover` did, and what the rebuilt chain cannot prove."""

    chain_path: Path
    moved_aside: list[Path] = field(default_factory=list)
    reason: str = ""
    chain_key: str = ""
    deployed: tuple[str, ...] = ()
    bars_replayed: int = 0
    decisions_replayed: int = 0
    epochs_replayed: int = 0
    cannot_prove: str = CANNOT_PROVE

    def to_json_data(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "chain_path": str(self.chain_path),
            "moved_aside": [str(p) for p in self.moved_aside],
            "reason": self.reason,
            "chain_key": self.chain_key,
            "deployed": list(self.deployed),
            "bars_replayed": self.bars_replayed,
            "decisions_replayed": self.decisions_replayed,
            "epochs_replayed": self.epochs_replayed,
            "cannot_prove": self.cannot_prove,
        }


def recover(
    settings: Settings, *, force: bool = False, progress: Callable[[str], None] | None = None
) -> RecoveryReport:
    """Rebuild the embedded chain from the store: move the old file aside, deploy, replay.

    A missing, corrupt or foreign chain file (one that does not hold the store's records) is
    recovered; a healthy chain holding the records is left alone unless `force`.

    Raises:
        UsageError: the configuration uses no embedded chain, or the chain is healthy and
            `force` is not given.
        ChainLocked: another process (the service?) has the chain open.
        ChainError: deploying or replaying failed (run `recover` again: it starts over).
    """
    if "embedded" not in (settings.chain.backend, settings.service.chain):
        raise UsageError(
            "agora chain recover rebuilds the embedded chain, but chain.backend is "
            f"{settings.chain.backend} and service.chain is {settings.service.chain}"
        )
    say = progress or (lambda _message: None)
    state_dir = embedded_state_dir(Path(settings.data.dir))
    report = RecoveryReport(chain_file(state_dir))
    with Store(settings.data.database_path) as store:
        report.reason = _diagnose(state_dir, store, force=force)
        if chain_files(state_dir):
            report.moved_aside = move_aside(state_dir, report.reason.split(":")[0])
            for path in report.moved_aside:
                say(f"moved {path.name} aside (kept, not deleted)")
        with EmbeddedBackend(state_dir) as backend:
            _replay(backend, store, settings, report, say)
    return report


def _diagnose(state_dir: Path, store: Store, *, force: bool) -> str:
    """Return why the chain is rebuilt ("missing", "corrupt: ...", "foreign", "forced")."""
    if not chain_file(state_dir).exists():
        return "missing"
    try:
        backend = EmbeddedBackend(state_dir, create=False)
    except ChainLost as e:
        return f"corrupt: {e}"
    try:
        require_chain_for_store(backend, store)
    except ChainLost:
        return "foreign: the chain file does not hold this store's records"
    finally:
        backend.close()
    if not force:
        raise UsageError(
            f"the embedded chain {chain_file(state_dir)} holds this store's records: nothing "
            "to recover (pass --force to move it aside and rebuild it anyway)"
        )
    return "forced"


def move_aside(state_dir: Path, reason: str) -> list[Path]:
    """Rename the chain file (and its -wal/-shm) to `embedded.<reason>-<UTC time>.sqlite`.

    Holds the chain's lock while renaming, so no process has it open.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    main = chain_file(state_dir)
    target = main.with_name(f"{main.stem}.{reason}-{stamp}{main.suffix}")
    lock = ChainFileLock(state_dir)
    try:
        moved = []
        for path in chain_files(state_dir):
            destination = Path(str(target) + str(path)[len(str(main)) :])
            os.replace(path, destination)
            moved.append(destination)
        return moved
    finally:
        lock.release()


def _replay(
    backend: ChainBackend,
    store: Store,
    settings: Settings,
    report: RecoveryReport,
    say: Callable[[str], None],
) -> None:
    from agent.audit.outbox import DecisionOutbox
    from agent.chain.deploy import deploy_all
    from agent.service import ledger

    deployment = deploy_all(backend, store, settings)
    report.chain_key, report.deployed = deployment.chain_key, deployment.deployed
    say(f"deployed {len(deployment.deployed)} contracts on the fresh chain {deployment.chain_key}")
    genesis = ledger.get_state(store, "genesis")
    if genesis is not None:
        from agent.service.replica import ChainReplica

        replica = ChainReplica(
            backend,
            deployment,
            store,
            settings,
            market=str(genesis["market"]),
            initial_quote=int(genesis["initial_quote"]),
            genesis_pool=(int(genesis["pool"][0]), int(genesis["pool"][1])),
            event=lambda *_args, **_fields: None,
        )
        replica.ensure_genesis()
        report.bars_replayed = replica.sync()
        replica.verify()
        say(f"replayed {report.bars_replayed} service bars (arbitrage and swaps)")
        flushed = replica.flush_decisions(force=True)
        report.decisions_replayed = 0 if flushed is None else flushed.sent
        if flushed is not None and flushed.error is not None:
            raise ChainLost(f"replaying the decision log failed: {flushed.error}")
        report.epochs_replayed = replica.replicate_rewards()
    else:
        outbox = DecisionOutbox(store, backend, deployment.decision_log)
        report.decisions_replayed = outbox.flush().sent
    say(f"replayed {report.decisions_replayed} decisions onto the DecisionLog")
    if report.epochs_replayed:
        say(f"replayed {report.epochs_replayed} reward epochs (publish and claims)")


def chain_status(settings: Settings) -> dict[str, Any]:
    """Return the configured chain's backend, file, head block and recorded contracts.

    Raises:
        ChainLocked: another process has the embedded chain open.
        ChainError: the chain cannot be opened or read.
    """
    from agent.chain.backends import connect
    from agent.chain.deploy import chain_key

    data_dir = Path(settings.data.dir)
    status: dict[str, Any] = {"backend": settings.chain.backend}
    with Store(settings.data.database_path) as store:
        if settings.chain.backend == "embedded":
            path = chain_file(embedded_state_dir(data_dir))
            sizes = [p.stat().st_size for p in chain_files(embedded_state_dir(data_dir))]
            status.update(chain_file=str(path), exists=path.exists(), size_bytes=sum(sizes))
            if not path.exists():
                status["note"] = "no chain yet" if chain_history(store).empty else RECOVER_HINT
                return status
        with connect(settings.chain, data_dir, create_chain=False) as backend:
            key = chain_key(backend)
            status.update(
                chain_key=key,
                chain_id=int(backend.w3.eth.chain_id),
                head_block=int(backend.w3.eth.block_number),
                contracts={n: r.address for n, r in store.read_deployments(key).items()},
            )
    return status
