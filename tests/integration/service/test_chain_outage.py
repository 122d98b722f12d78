"""Chain outage: the anvil node is stopped for a stretch of bars, then started again with its
state. Decisions go on meanwhile and wait in the store; when the node is back the chain catches
up: every bar is replicated once, every decision logged once, nothing lost or duplicated."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.audit.outbox import stored_count, unconfirmed_count
from agent.audit.verify import verify
from agent.chain.backends import AnvilBackend
from agent.service import jobs, ledger
from agent.service.replica import ChainReplica
from tests.integration.service.conftest import Started, StartRuntime
from tests.unit.service.fixtures import service_settings


def catch_up(started: Started, timeout_s: float = 30.0) -> None:
    """Tick until the chain holds every decided bar (the outage backoff is a few seconds)."""
    runtime = started.runtime
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs.tick(runtime, max_bars=0)
        store = runtime.require_store()
        replica = runtime.replica
        if (
            replica is not None
            and runtime.chain_error is None
            and ledger.count_decisions_after(store, runtime.market, replica.synced_ms) == 0
            and unconfirmed_count(store) == 0
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"the chain did not catch up: {runtime.health()}")


def onchain_entries(replica: ChainReplica) -> int:
    log = replica.deployment.contract(replica.backend.w3, "decision_log")
    return int(log.functions.count().call())


def test_an_anvil_outage_delays_the_chain_and_loses_nothing(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data", chain="anvil")
    started = start_runtime(settings)
    runtime = started.runtime
    backend = runtime.backend
    assert isinstance(backend, AnvilBackend) and backend.persistent
    jobs.tick(runtime, max_bars=3)
    assert runtime.replica is not None and onchain_entries(runtime.replica) == 3

    backend.stop()  # SIGTERM: anvil writes its state file
    for _ in range(4):
        jobs.tick(runtime, max_bars=1)
    store = runtime.require_store()
    health = runtime.health()
    assert health["status"] == "degraded" and health["chain"]["reachable"] is False
    assert stored_count(store) == 7 and unconfirmed_count(store) == 4
    assert ledger.count_decisions_after(store, runtime.market, runtime.replica.synced_ms) == 4
    assert len(started.events("chain_unreachable")) == 1

    backend.process = backend._start(30.0)  # the same node, port and state file
    catch_up(started)

    replica = runtime.replica
    assert replica is not None
    replica.verify()  # pool and balances exactly as the 7 records imply
    report = verify(store, replica.backend, replica.deployment.decision_log)
    assert report.ok and report.onchain == report.stored == 7
    executions = store.db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT bar_time_ms) FROM service_executions WHERE chain_key = ?",
        [replica.key],
    ).fetchone()
    assert tuple(executions) == (7, 7)
    assert started.events("chain_recovered")
    assert runtime.health()["status"] == "ok"


def test_a_persistent_anvil_chain_is_kept_across_restarts_without_replay(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data", chain="anvil")
    first = start_runtime(settings)
    jobs.tick(first.runtime, max_bars=4)
    chain_key = first.runtime.replica.key  # type: ignore[union-attr]
    first.runtime.close()  # a clean stop: anvil writes its state

    second = start_runtime(settings, model=False)
    (ready,) = second.events("chain_ready")
    assert ready["chain_key"] == chain_key and ready["replayed_bars"] == 0
    assert ready["deployed"] == []
    jobs.tick(second.runtime, max_bars=2)
    replica = second.runtime.replica
    assert replica is not None
    replica.verify()
    assert onchain_entries(replica) == stored_count(second.runtime.require_store()) == 6


ANVIL_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""The well-known private key of anvil's first development account."""


def test_an_rpc_node_with_one_key_trades_as_the_operator_and_keeps_its_state(
    tmp_path: Path, start_runtime: StartRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGORA_PRIVATE_KEY", ANVIL_KEY_0)
    with AnvilBackend() as node:
        settings = service_settings(tmp_path / "data", chain="rpc")
        chain = settings.chain.model_copy(update={"rpc_url": node.url})
        settings = settings.model_copy(update={"chain": chain})
        first = start_runtime(settings)
        jobs.tick(first.runtime, max_bars=3)
        replica = first.runtime.replica
        assert replica is not None and replica.shared_account
        assert replica.trader == replica.operator == node.accounts[0]
        replica.verify()  # one account holds the float, the portfolio and the arbitrage flows
        first.runtime.close()

        second = start_runtime(settings, model=False)
        (ready,) = second.events("chain_ready")
        assert ready["chain_key"] == "rpc:31337" and ready["replayed_bars"] == 0
        jobs.tick(second.runtime, max_bars=2)
        second.runtime.replica.verify()  # type: ignore[union-attr]
        store = second.runtime.require_store()
        report = verify(store, node, second.runtime.replica.deployment.decision_log)  # type: ignore[union-attr]
        assert report.ok and report.onchain == 5
