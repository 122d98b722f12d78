"""`agora chain recover`: rebuild a lost chain from the store, explicitly.

The chains Agora runs keep their state in the data directory: the embedded chain in
`data/chain/embedded.sqlite`, anvil in `data/anvil-state.json`. When that state is lost,
replaced or corrupt, the service and the audit refuse to go on and name this command; nothing
rebuilds a chain silently. `recover` moves the old state aside (never deletes it), starts a
fresh chain, deploys, and replays the store through the service's replica (the service's bars,
the decision log, reward epochs and their claims). On anvil, whose rebuilt chain has the same
key as the lost one, the records made on the lost chain are first kept under a retired key
(`anvil:31337/lost-<time>`).

What it proves and what it cannot: a replayed chain shows that the store is self-consistent
(every record hashes to its log entry and links to the one before; the recorded bars replay to
exactly the pool and balances the records imply). It cannot show that these decisions were
published on-chain when they were made: the store wrote them there just now. `recover` says
both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.chain.backends import ChainBackend, EmbeddedBackend, connect, embedded_state_dir
from agent.chain.custody import (
    CANNOT_PROVE,
    PROVES,
    move_aside,
    move_aside_file,
    require_chain_for_store,
    retire_chain_records,
)
from agent.chain.embedded import chain_file, chain_files
from agent.chain.node import ChainLocked, ChainLost, anvil_state_path, live_record
from agent.config import Settings
from agent.errors import ChainError, UsageError
from agent.store import Store

REBUILDABLE = ("embedded", "anvil")


@dataclass
class RecoveryReport:
    """What `recover` did, what the rebuilt chain proves and what it cannot."""

    chain_path: Path
    backend: str = "embedded"
    moved_aside: list[Path] = field(default_factory=list)
    reason: str = ""
    chain_key: str = ""
    retired_key: str | None = None
    deployed: tuple[str, ...] = ()
    bars_replayed: int = 0
    decisions_replayed: int = 0
    epochs_replayed: int = 0
    proves: str = PROVES
    cannot_prove: str = CANNOT_PROVE

    def to_json_data(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "backend": self.backend,
            "chain_path": str(self.chain_path),
            "moved_aside": [str(p) for p in self.moved_aside],
            "reason": self.reason,
            "chain_key": self.chain_key,
            "retired_key": self.retired_key,
            "deployed": list(self.deployed),
            "bars_replayed": self.bars_replayed,
            "decisions_replayed": self.decisions_replayed,
            "epochs_replayed": self.epochs_replayed,
            "proves": self.proves,
            "cannot_prove": self.cannot_prove,
        }


def recovered_backend(settings: Settings) -> str:
    """Return which chain `recover` rebuilds: `chain.backend`, else `service.chain`.

    Raises:
        UsageError: neither is a chain Agora runs (embedded or anvil).
    """
    for name in (settings.chain.backend, settings.service.chain):
        if name in REBUILDABLE:
            return name
    raise UsageError(
        "agora chain recover rebuilds a chain Agora runs (embedded or anvil), but "
        f"chain.backend and service.chain are {settings.chain.backend}: an rpc node's state "
        "is not Agora's to rebuild"
    )


def recover(
    settings: Settings, *, force: bool = False, progress: Callable[[str], None] | None = None
) -> RecoveryReport:
    """Rebuild the data directory's chain from the store: move the old state aside, deploy, replay.

    A missing, corrupt or foreign chain (one that does not hold the store's records) is
    recovered; a healthy chain holding the records is left alone unless `force`.

    Raises:
        UsageError: the configuration uses no chain Agora runs, the chain is healthy and
            `force` is not given, or the service runs (stop it first).
        ChainLocked: another process has the chain open.
        ChainError: deploying or replaying failed (run `recover` again: it starts over).
    """
    say = progress or (lambda _message: None)
    backend_name = recovered_backend(settings)
    data_dir = Path(settings.data.dir)
    with Store(settings.data.database_path) as store:
        if backend_name == "embedded":
            state_dir = embedded_state_dir(data_dir)
            report = RecoveryReport(chain_file(state_dir), "embedded")
            report.reason = _diagnose_embedded(state_dir, store, force=force)
            if chain_files(state_dir):
                report.moved_aside = move_aside(state_dir, report.reason.split(":")[0])
            _say_moved(report, say)
            with EmbeddedBackend(state_dir) as backend:
                _replay(backend, store, settings, report, say)
            return report
        chain = settings.chain.model_copy(update={"backend": "anvil", "anvil_persist": True})
        state = anvil_state_path(data_dir)
        report = RecoveryReport(state, "anvil")
        report.reason = _diagnose_anvil(chain, data_dir, store, force=force)
        moved = move_aside_file(state, report.reason.split(":")[0])
        report.moved_aside = [] if moved is None else [moved]
        _say_moved(report, say)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        with connect(chain, data_dir) as backend:
            from agent.chain.deploy import chain_key

            key = chain_key(backend)
            if store.read_deployments(key) or _has_chain_records(store, key):
                report.retired_key = retire_chain_records(store, key, f"lost-{stamp}")
                say(f"kept the records made on the lost chain under {report.retired_key}")
            _replay(backend, store, settings, report, say)
        say(f"anvil wrote the rebuilt chain to {state}")
        return report


def _say_moved(report: RecoveryReport, say: Callable[[str], None]) -> None:
    for path in report.moved_aside:
        say(f"moved {path.name} aside (kept, not deleted)")


def _has_chain_records(store: Store, key: str) -> bool:
    row = store.db.execute("SELECT 1 FROM service_chains WHERE chain_key = ?", [key]).fetchone()
    return row is not None


def _diagnose_embedded(state_dir: Path, store: Store, *, force: bool) -> str:
    """Return why the chain is rebuilt ("missing", "corrupt: ...", "foreign", "forced")."""
    if not chain_file(state_dir).exists():
        return "missing"
    try:
        backend = EmbeddedBackend(state_dir, create=False)
    except ChainLocked as e:
        raise ChainLocked(f"{e} (stop `agora run` before `agora chain recover`)") from None
    except ChainLost as e:
        return f"corrupt: {e}"
    try:
        require_chain_for_store(backend, store)
    except ChainLost:
        return "foreign: the chain file does not hold this store's records"
    finally:
        backend.close()
    return _healthy(chain_file(state_dir), force)


def _diagnose_anvil(chain: Any, data_dir: Path, store: Store, *, force: bool) -> str:
    """Return why the anvil chain is rebuilt ("missing", "lost: ...", "corrupt: ...", "forced")."""
    from agent.chain.deploy import chain_key, check_code

    running = live_record(data_dir, "anvil", timeout_s=chain.rpc_timeout_s)
    if running is not None:
        raise UsageError(
            f"{running.describe()} serves this data directory's chain: stop it (stop `agora run`) "
            "before `agora chain recover`"
        )
    state = anvil_state_path(data_dir)
    if not state.exists():
        return "missing"
    try:
        with connect(chain, data_dir) as backend:
            key = chain_key(backend)
            for name, record in store.read_deployments(key).items():
                check_code(backend, key, name, record.address, record.code_hash)
    except ChainLost as e:
        return f"{'corrupt' if 'cannot load its state' in str(e) else 'lost'}: {e}"
    return _healthy(state, force)


def _healthy(path: Path, force: bool) -> str:
    if not force:
        raise UsageError(
            f"the chain in {path} holds this store's records: nothing to recover (pass --force "
            "to move it aside and rebuild it anyway)"
        )
    return "forced"


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
        failed = replica.failed_bar
        if failed is not None:
            raise ChainError(
                f"replaying bar {failed['bar']} failed: {failed['error']}; run `agora chain "
                "recover` again (it starts over)"
            )
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
