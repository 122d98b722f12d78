"""`agora chain recover`: rebuild a lost embedded chain from the store, explicitly.

`recover` moves the old chain file aside (never deletes it), starts a fresh chain, deploys, and
replays the store through the service's replica (the service's bars, the decision log, reward
epochs). A replayed chain proves only that the store is self-consistent, not that its
decisions were published when they were made; `recover` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.chain.backends import ChainBackend, EmbeddedBackend, embedded_state_dir
from agent.chain.custody import CANNOT_PROVE, move_aside, require_chain_for_store
from agent.chain.embedded import ChainLost, chain_file, chain_files
from agent.config import Settings
from agent.errors import ChainError, UsageError
from agent.store import Store


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
