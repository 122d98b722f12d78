"""Chain outages: the anvil node hangs (SIGSTOP) for a stretch of bars, or dies and is
restarted by the service from its state file. Decisions go on meanwhile and wait in the store;
when the node answers again the chain catches up: every bar is replicated once, every decision
logged once, nothing lost or duplicated."""

from __future__ import annotations

import os
import signal
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


def assert_caught_up_exactly_once(started: Started, bars: int, *, outage: bool = True) -> None:
    runtime = started.runtime
    replica = runtime.replica
    assert replica is not None
    replica.verify()  # pool and balances exactly as the records imply
    store = runtime.require_store()
    report = verify(store, replica.backend, replica.deployment.decision_log)
    assert report.ok and report.onchain == report.stored == bars
    executions = store.db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT bar_time_ms) FROM service_executions WHERE chain_key = ?",
        [replica.key],
    ).fetchone()
    assert tuple(executions) == (bars, bars)
    assert bool(started.events("chain_recovered")) is outage
    assert runtime.health()["status"] == "ok"


def test_a_hung_anvil_node_delays_the_chain_and_loses_nothing(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data", chain="anvil")
    chain = settings.chain.model_copy(update={"rpc_timeout_s": 0.5})
    settings = settings.model_copy(update={"chain": chain})
    started = start_runtime(settings)
    runtime = started.runtime
    backend = runtime.backend
    assert isinstance(backend, AnvilBackend) and backend.persistent
    jobs.tick(runtime, max_bars=3)
    assert runtime.replica is not None and onchain_entries(runtime.replica) == 3

    os.kill(backend.pid, signal.SIGSTOP)
    try:
        assert runtime.probe_chain(0.3) is not None  # the heartbeat's probe: degraded at once
        took = time.monotonic()
        for _ in range(4):
            jobs.tick(runtime, max_bars=1)
        took = time.monotonic() - took
        store = runtime.require_store()
        health = runtime.health()
        assert health["status"] == "degraded" and health["chain"]["reachable"] is False
        assert "did not answer within 0.3 s" in health["chain"]["error"]
        assert stored_count(store) == 7 and unconfirmed_count(store) == 4
        assert took < 4.0  # each attempt waits one 0.5 s deadline at most, then backs off
    finally:
        os.kill(backend.pid, signal.SIGCONT)
    catch_up(started)
    assert_caught_up_exactly_once(started, 7)


def test_a_dead_anvil_node_is_restarted_from_its_state_and_loses_nothing(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data", chain="anvil")
    chain = settings.chain.model_copy(update={"anvil_state_interval_s": 1})
    settings = settings.model_copy(update={"chain": chain})
    started = start_runtime(settings)
    runtime = started.runtime
    backend = runtime.backend
    assert isinstance(backend, AnvilBackend) and backend.persistent
    assert backend.state_path is not None
    jobs.tick(runtime, max_bars=3)
    assert runtime.replica is not None and onchain_entries(runtime.replica) == 3
    written = time.time_ns()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        not backend.state_path.exists() or backend.state_path.stat().st_mtime_ns < written
    ):
        time.sleep(0.05)  # the periodic state now holds the 3 bars

    os.kill(backend.pid, signal.SIGKILL)
    backend.process.wait()
    for _ in range(4):
        jobs.tick(runtime, max_bars=1)
    store = runtime.require_store()
    assert stored_count(store) == 7
    assert len(started.events("chain_node_died")) == 1
    catch_up(started)

    assert len(started.events("anvil_started")) == 2  # the service restarted its node
    assert runtime.backend is not backend
    assert_caught_up_exactly_once(started, 7)


def test_a_chain_behind_the_records_is_found_where_it_stands_and_replayed(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    """A node restarted from a state written before its last transactions (simulated with a
    snapshot and a revert): the replica finds the bar it stands at and sends the rest once."""
    settings = service_settings(tmp_path / "data", chain="anvil")
    started = start_runtime(settings)
    runtime = started.runtime
    backend = runtime.backend
    assert isinstance(backend, AnvilBackend)
    jobs.tick(runtime, max_bars=3)
    snapshot = backend.w3.provider.make_request("evm_snapshot", [])["result"]
    jobs.tick(runtime, max_bars=2)
    assert onchain_entries(runtime.replica) == 5  # type: ignore[arg-type]
    assert backend.w3.provider.make_request("evm_revert", [snapshot])["result"] is True
    runtime.replica = None  # what a restarted node gets: a fresh look at the chain
    runtime._node_restarted = True

    catch_up(started)

    (rewound,) = started.events("chain_rewound")
    assert rewound["bars"] == 2
    assert_caught_up_exactly_once(started, 5, outage=False)


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
