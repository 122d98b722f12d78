"""The service on an idle anvil: bars minutes apart, a stop of minutes, a node whose clock jumps.

Time is warped, not waited: the service's clock (`ServiceRuntime(clock=...)`) and the node's
(`evm_increaseTime`) move on together by the gap, which leaves the node's latest block as old as
the gap, as a real idle node's is. A swap whose deadline were counted from that block would be
refused (`Pool: EXPIRED`), and the service used to stop on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from web3.types import RPCEndpoint

from agent.audit.verify import verify
from agent.chain.backends import ChainBackend
from agent.config import Settings
from agent.service import jobs, ledger
from agent.service.replica import ChainReplica
from agent.service.status import status as service_status
from tests.integration.chain.test_clock import Clock, block_interval
from tests.integration.service.conftest import Started, StartRuntime
from tests.unit.service.fixtures import service_settings

GAP_S = 360
"""Six minutes between bars: more than the 300 s window a swap had after the latest block."""


def idle(node: ChainBackend, clock: Clock, seconds: float) -> None:
    """Let `seconds` pass with no block mined: for the service, and for the node's clock."""
    clock.offset_s += seconds
    response = node.w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [int(seconds)])
    assert "error" not in response, response


def executions(started: Started) -> list[tuple[Any, ...]]:
    """(bar, status, attempts, error, arbitrage_tx, swap_tx) of every bar on the service's chain."""
    replica = started.runtime.replica
    assert replica is not None
    return [
        tuple(row)
        for row in started.runtime.require_store().db.execute(
            "SELECT bar_time_ms, status, attempts, error, arbitrage_tx, swap_tx "
            "FROM service_executions WHERE chain_key = ? ORDER BY bar_time_ms",
            [replica.key],
        )
    ]


def reverted(node: ChainBackend, from_block: int) -> int:
    """Count the transactions mined since `from_block` that reverted."""
    w3 = node.w3
    return sum(
        w3.eth.get_transaction_receipt(tx)["status"] == 0
        for number in range(from_block, w3.eth.block_number + 1)
        for tx in w3.eth.get_block(number)["transactions"]
    )


def assert_on_chain_once(started: Started, bars: int) -> ChainReplica:
    """Every decided bar replicated once, the chain as the records imply, the audit intact."""
    runtime = started.runtime
    assert runtime.fatal is None and not started.events("fatal")
    store = runtime.require_store()
    decided = [t.bar_time_ms for t in ledger.decisions_after(store, runtime.market, None)]
    rows = executions(started)
    assert len(decided) == bars and [r[0] for r in rows] == decided
    assert all(r[1] == ledger.EXECUTED for r in rows)
    replica = runtime.replica
    assert replica is not None and replica.synced_ms == decided[-1]
    replica.verify()  # pool and balances exactly as the records imply
    report = verify(store, replica.backend, replica.deployment.decision_log)
    assert report.ok and report.onchain == report.stored == bars, report.mismatch
    assert runtime.health()["status"] == "ok"
    return replica


def anvil_settings(tmp_path: Path, **chain: Any) -> Settings:
    settings = service_settings(tmp_path / "data", chain="anvil")
    return settings.model_copy(update={"chain": settings.chain.model_copy(update=chain)})


def test_bars_six_minutes_apart_keep_trading_on_anvil(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    clock = Clock()
    started = start_runtime(anvil_settings(tmp_path), clock=clock)
    runtime = started.runtime
    node = runtime.backend
    first_block = node.w3.eth.block_number
    for _ in range(6):
        idle(node, clock, GAP_S)
        sent_at = clock()
        assert jobs.tick(runtime, max_bars=1).status == "ok"
        (bar, *_, arbitrage_tx, swap_tx) = executions(started)[-1]
        tx = arbitrage_tx or swap_tx
        assert tx is not None, f"bar {bar} sent nothing: the test needs a swap per bar"
        block = node.w3.eth.get_block(node.w3.eth.get_transaction_receipt(tx)["blockNumber"])
        assert block["timestamp"] >= int(sent_at)  # mined at the time it was sent

    assert_on_chain_once(started, 6)
    assert not started.events("bar_execution_failed")
    assert reverted(node, first_block) == 0  # every swap valid at the first try: no retry


def test_a_restart_after_a_six_minute_stop_keeps_trading(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = anvil_settings(tmp_path)
    clock = Clock()
    first = start_runtime(settings, clock=clock)
    for _ in range(3):
        idle(first.runtime.backend, clock, GAP_S)
        jobs.tick(first.runtime, max_bars=1)
    first.runtime.close()  # a clean stop: anvil writes its state file

    clock.offset_s += GAP_S + 40  # stopped for six minutes and a bit
    second = start_runtime(settings, model=False, clock=clock)
    (ready,) = second.events("chain_ready")
    assert ready["replayed_bars"] == 0
    node = second.runtime.backend
    # the node restarted from its state at this host's real time: put it on the warped one,
    # which leaves its latest block as old as the stop
    node.w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [int(clock.offset_s)])
    first_block = node.w3.eth.block_number
    for gap in (0, GAP_S, GAP_S):
        idle(node, clock, gap)
        assert jobs.tick(second.runtime, max_bars=1).status == "ok"

    assert_on_chain_once(second, 6)
    assert not second.events("bar_execution_failed")
    assert reverted(node, first_block) == 0  # every swap valid at the first try: no retry


def test_an_expired_swap_is_retried_once_then_recorded_as_failed_and_the_next_bar_goes_on(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = anvil_settings(tmp_path, deadline_s=1)
    first = start_runtime(settings)
    runtime = first.runtime
    node = runtime.backend
    block_interval(node, 600)  # the node's clock jumps ten minutes a block: a 1 s window expires

    assert jobs.tick(runtime, max_bars=1).status == "ok"
    assert runtime.fatal is None  # a revert is not fatal
    (bar, status, attempts, error, _, swap_tx) = executions(first)[0]
    assert (status, attempts, swap_tx) == (ledger.FAILED, 1, None)
    assert "Pool: EXPIRED, twice" in error  # sent twice: once more with a fresh deadline
    (failed,) = first.events("bar_execution_failed")
    assert failed["bar_time_ms"] == bar and failed["reason"] == "Pool: EXPIRED"
    health = runtime.health()
    assert health["status"] == "degraded" and health["chain"]["failed_bar"]["bar_time_ms"] == bar
    assert health["chain"]["reachable"] is True
    replica = runtime.replica
    assert replica is not None and replica.synced_ms is None
    replica.verify()  # the chain as the records imply before the failed bar: no false alarm
    store = runtime.require_store()
    report = verify(store, node, replica.deployment.decision_log)
    assert report.ok and report.onchain == 1  # the decision record stands, and is logged
    (chain,) = service_status(settings)["chains"]  # what `agora status` shows
    assert chain["failed_bar"]["attempts"] == 1 and "EXPIRED" in chain["failed_bar"]["error"]

    blocks = node.w3.eth.block_number
    for _ in range(3):  # no new bar: the failed one is not tried again in a loop
        assert jobs.tick(runtime, max_bars=0).status == "idle"
    assert node.w3.eth.block_number == blocks and executions(first)[0][2] == 1

    # a crash that leaves the node running (its clock still jumping): the next start attaches,
    # tries the bar once more, records the second failure and starts without a false alarm
    runtime.backend = None
    runtime.close(exit_code=1)
    for cleanup in node.cleanups:  # as a killed process would: its lock goes, the node stays
        cleanup(False)
    second = start_runtime(settings, model=False)
    assert second.events("anvil_attached") and second.runtime.fatal is None
    assert executions(second)[0][1:3] == (ledger.FAILED, 2)
    assert second.runtime.health()["status"] == "degraded"

    block_interval(second.runtime.backend, None)  # the node's clock is put right
    assert jobs.tick(second.runtime, max_bars=1).status == "ok"
    (recovered,) = second.events("bar_execution_recovered")
    assert recovered["bar_time_ms"] == bar and recovered["attempts"] == 3
    rows = executions(second)
    assert [r[1:3] for r in rows] == [(ledger.EXECUTED, 3), (ledger.EXECUTED, 1)]
    assert "Pool: EXPIRED" in rows[0][3]  # the last failure is kept beside the success
    assert_on_chain_once(second, 2)
