"""Crash-only recovery: every start completes what a crash left, and nothing happens twice.

The embedded chain file outlives the process, so a restart replays nothing; when it is lost the
service refuses to start, and `agora chain recover` replays the store until the new chain holds
what the records imply (pool, balances, decision log, reward roots and claims). A crash between
recording a bar's intent and appending it to the audit trail, or between appending and marking
it, is finished at the next start with exactly one record. On a chain that keeps its state
(the embedded chain file, anvil), a crash after a swap was mined but before it was recorded
does not send it again.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.audit import outbox
from agent.audit.outbox import read_decisions, stored_count
from agent.audit.verify import verify
from agent.chain.embedded import ChainLost
from agent.config import effective_config
from agent.errors import StoreError
from agent.rewards.ledger import PUBLISHED, read_epoch
from agent.service import jobs, ledger
from agent.service.recover import recover
from agent.service.replica import ChainReplica
from agent.service.runtime import ServiceRuntime
from agent.service.telemetry import ServiceLog
from tests.integration.service.conftest import StartRuntime
from tests.unit.service.fixtures import service_settings


class Crash(Exception):
    """Stands for the process dying at this point."""


def crash_once(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
    """Make `target.name` raise Crash the first time, after doing its work if `after`."""
    real = getattr(target, name)
    calls = {"n": 0}

    def dying(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, dying)


def crash_after_once(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
    """Make `target.name` do its work and then raise Crash, the first time."""
    real = getattr(target, name)
    calls = {"n": 0}

    def dying(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash(name)
        return result

    monkeypatch.setattr(target, name, dying)


def assert_exactly_once(store: object, market: str) -> None:
    records = [d.record() for d in read_decisions(store)]  # type: ignore[arg-type]
    bars = [r.bar_time_ms for r in records]
    assert bars == sorted(set(bars)), "a bar was decided twice or out of order"
    counts = ledger.tick_counts(store, market)  # type: ignore[arg-type]
    assert counts["decided"] == len(records) and ledger.intents(store, market) == []  # type: ignore[arg-type]


def assert_swaps_match_the_records(replica: ChainReplica, store: object, market: str) -> None:
    """Every recorded arbitrage and trade is exactly one Swap event on the pool, no more."""
    pool = replica.deployment.contract(replica.backend.w3, "pool")
    events = pool.events.Swap().get_logs(from_block=0)
    by_sender = {replica.operator: 0, replica.trader: 0}
    for event in events:
        by_sender[event["args"]["sender"]] += 1
    ticks = ledger.decisions_after(store, market, None)  # type: ignore[arg-type]
    arbitrages = sum(t.outcome is not None and t.outcome.arbitrage is not None for t in ticks)
    trades = sum(t.outcome is not None and t.outcome.trade.side != "none" for t in ticks)
    assert by_sender == {replica.operator: arbitrages, replica.trader: trades}


def test_a_lost_embedded_chain_is_refused_and_recover_replays_it_to_match_the_records(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data")
    # every positive contribution paid in part: epoch 16 publishes and is claimed (in epoch 15
    # no strategy changes an action of this policy, so it carries everything)
    rewards = settings.rewards.model_copy(
        update={"auto_claim": True, "significance": 0.0, "group_r2": 1.0}
    )
    settings = settings.model_copy(update={"rewards": rewards})
    first = start_runtime(settings)
    jobs.tick(first.runtime, max_bars=41)
    assert jobs.reward_epoch(first.runtime).status == "ok"  # epoch 15: bars 300-319, carried
    assert jobs.reward_epoch(first.runtime).status == "ok"  # epoch 16: bars 320-339, claimed
    old_key = first.runtime.replica.key  # type: ignore[union-attr]
    first.runtime.close()

    again = start_runtime(settings, model=False)  # the chain file outlives the process
    (ready,) = again.events("chain_ready")
    assert ready["chain_key"] == old_key and ready["deployed"] == []
    assert ready["replayed_bars"] == 0 and ready["epochs"] == 0
    again.runtime.close()

    for path in (tmp_path / "data" / "chain").glob("embedded.sqlite*"):
        path.unlink()
    config = tmp_path / "service.yaml"
    config.write_text(yaml.safe_dump(effective_config(settings)))
    refused = subprocess.run(
        [sys.executable, "-m", "agent", "--config", str(config), "run", "--once"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1, refused.stderr
    assert "`agora chain recover`" in refused.stderr and "embedded chain file" in refused.stderr
    assert not (tmp_path / "data" / "chain" / "embedded.sqlite").exists()  # not rebuilt
    lost = ServiceRuntime(settings, log=ServiceLog(stream=io.StringIO()))
    with pytest.raises(ChainLost, match="agora chain recover"):
        lost.start()
    lost.close(exit_code=1)

    report = recover(settings)
    assert report.reason == "missing" and report.chain_key != old_key
    assert (report.bars_replayed, report.decisions_replayed, report.epochs_replayed) == (41, 41, 2)
    assert "self-consistent" in report.cannot_prove

    second = start_runtime(settings, model=False)
    runtime = second.runtime
    replica = runtime.replica
    assert replica is not None and replica.key == report.chain_key
    (ready,) = second.events("chain_ready")
    assert ready["replayed_bars"] == 0 and ready["logged"] == 0 and ready["epochs"] == 0
    replica.verify()
    store = runtime.require_store()
    report = verify(store, replica.backend, replica.deployment.decision_log)
    assert report.ok and report.onchain == 41
    record = read_epoch(store, 16)
    assert record is not None and record.status == PUBLISHED and record.chain_key == replica.key
    distributor = replica.deployment.contract(replica.backend.w3, "reward_distributor")
    token = replica.deployment.contract(replica.backend.w3, "reward_token")
    assert "0x" + bytes(distributor.functions.epochRoot(16).call()).hex() == record.root
    for allocation in record.allocations:
        if allocation.leaf_index is not None:
            assert distributor.functions.isClaimed(16, allocation.leaf_index).call()
            assert allocation.claimed_chain_key == replica.key
    paid = {a.account: 0 for a in record.allocations}
    for allocation in record.allocations:
        paid[allocation.account] += allocation.amount
    for account, amount in paid.items():
        assert token.functions.balanceOf(account).call() == amount

    jobs.tick(runtime, max_bars=2)  # and it goes on from bar 341
    assert_exactly_once(store, runtime.market)
    assert stored_count(store) == 43


@pytest.mark.parametrize(
    ("target", "name", "after"),
    [
        (outbox, "append_decision", False),  # intent recorded, not in the audit trail
        (ledger, "mark_decided", False),  # in the audit trail, not marked
        (ledger, "mark_decided", True),  # marked, the chain not yet replicated
    ],
)
def test_a_crash_inside_a_bar_is_finished_at_the_next_start_exactly_once(
    tmp_path: Path,
    start_runtime: StartRuntime,
    monkeypatch: pytest.MonkeyPatch,
    target: object,
    name: str,
    after: bool,
) -> None:
    settings = service_settings(tmp_path / "data")
    first = start_runtime(settings)
    jobs.tick(first.runtime, max_bars=2)
    with monkeypatch.context() as patch:
        (crash_after_once if after else crash_once)(patch, target, name)
        with pytest.raises(Crash):
            jobs.tick(first.runtime, max_bars=1)
    first.runtime.close()

    second = start_runtime(settings, model=False)
    runtime = second.runtime
    store = runtime.require_store()
    (started,) = second.events("started")
    assert started["recovered_intents"] == (0 if after else 1)
    assert stored_count(store) == 3
    jobs.tick(runtime, max_bars=2)
    assert_exactly_once(store, runtime.market)
    assert stored_count(store) == 5
    runtime.replica.verify()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("step", "before", "chain"),
    [("swap", 2, "anvil"), ("record", 2, "anvil"), ("swap", 0, "anvil"), ("swap", 2, "embedded")],
)
def test_on_a_persistent_chain_a_crash_after_sending_never_sends_twice(
    tmp_path: Path,
    start_runtime: StartRuntime,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    before: int,
    chain: str,
) -> None:
    settings = service_settings(tmp_path / "data", chain=chain)
    first = start_runtime(settings)
    if before:
        jobs.tick(first.runtime, max_bars=before)
    with monkeypatch.context() as patch:
        if step == "swap":  # the arbitrage was mined, the trader's swap not sent
            real = ChainReplica._execute

            def die_on_trade(self: ChainReplica, swap: object, sender: str, plan: object) -> object:
                if sender == self.trader:
                    raise Crash("before the trader's swap")
                return real(self, swap, sender, plan)  # type: ignore[arg-type]

            patch.setattr(ChainReplica, "_execute", die_on_trade)
        else:  # both swaps mined, the execution not recorded
            crash_after_once(patch, ledger, "record_execution")
        with pytest.raises(Crash):
            jobs.tick(first.runtime, max_bars=3)
    first.runtime.close()  # the chain keeps what was mined (state file)

    second = start_runtime(settings, model=False)
    replica = second.runtime.replica
    assert replica is not None
    replica.verify()
    store = second.runtime.require_store()
    assert_swaps_match_the_records(replica, store, second.runtime.market)
    assert verify(store, replica.backend, replica.deployment.decision_log).ok
    assert_exactly_once(store, second.runtime.market)


def test_a_full_disk_stops_the_service_and_a_restart_completes_the_bar(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data")
    started = start_runtime(settings)
    runtime = started.runtime
    jobs.tick(runtime, max_bars=1)
    store = runtime.require_store()
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # this connection: no room left

    result = jobs.run_job(runtime, "tick", lambda r: jobs.tick(r, max_bars=200))

    assert result.status == "fatal" and isinstance(runtime.fatal, StoreError)
    assert "database or disk is full" in str(runtime.fatal)
    (fatal,) = started.events("fatal")
    assert fatal["kind"] == "StoreError"
    assert started.events("decision")[-1]["seq"] == 0  # no second decision was logged
    runtime.close(exit_code=1)

    second = start_runtime(settings, model=False)  # space again (a new connection)
    store = second.runtime.require_store()
    jobs.tick(second.runtime, max_bars=2)
    assert_exactly_once(store, second.runtime.market)
    second.runtime.replica.verify()  # type: ignore[union-attr]
