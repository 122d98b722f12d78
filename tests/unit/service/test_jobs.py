"""The jobs as plain functions of a started runtime (embedded chain, replay, a linear model)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from agent.audit.outbox import read_decisions, stored_count, unconfirmed_count
from agent.audit.verify import verify
from agent.chain.backends import EmbeddedBackend, embedded_state_dir
from agent.config import Settings
from agent.errors import DataError, ModelError
from agent.rewards.ledger import PUBLISHED, list_epochs, read_epoch
from agent.service import jobs, ledger
from agent.service.feeds import ReplayFeed, replay_source
from agent.store import Store
from tests.unit.service.conftest import StartRuntime
from tests.unit.service.fixtures import prepare, service_settings


def test_tick_decides_each_new_bar_once_in_bar_order(
    settings: Settings, start_runtime: StartRuntime
) -> None:
    started = start_runtime(settings)
    runtime = started.runtime

    first = jobs.tick(runtime, max_bars=3)
    second = jobs.tick(runtime, max_bars=2)

    assert (first.status, first.bars, second.bars) == ("ok", 3, 2)
    store = runtime.require_store()
    records = [d.record() for d in read_decisions(store)]
    with Store(settings.data.database_path) as source_store:
        _, source, _ = replay_source(source_store, settings)
    expected = source["open_time"].iloc[300:305].tolist()
    assert [r.bar_time_ms for r in records] == expected
    assert [r.seq for r in records] == [0, 1, 2, 3, 4]
    assert all(r.market == "replay-synthetic:SYN/USD:1h" for r in records)
    decisions = started.events("decision")
    assert [d["seq"] for d in decisions] == [0, 1, 2, 3, 4]
    assert {"bar", "target_exposure", "side", "value_quote", "latency_ms"} <= set(decisions[0])


def test_a_replicated_chain_holds_exactly_what_the_records_imply(
    settings: Settings, start_runtime: StartRuntime
) -> None:
    runtime = start_runtime(settings).runtime
    jobs.tick(runtime, max_bars=6)

    replica = runtime.replica
    assert replica is not None
    snapshot = replica.verify()
    store = runtime.require_store()
    last = ledger.last_decision(store, runtime.market)
    assert last is not None and last.outcome is not None
    assert replica.synced_ms == last.bar_time_ms
    assert snapshot.pool == last.outcome.pool_after[:2]
    report = verify(store, replica.backend, replica.deployment.decision_log)
    assert report.ok and report.onchain == report.stored == 6


def test_tick_is_idle_until_the_replay_reveals_the_next_bar(
    settings: Settings, start_runtime: StartRuntime
) -> None:
    now = [0.0]
    prepare(settings)
    with Store(settings.data.database_path) as store:
        key, candles, hidden = replay_source(store, settings)
    feed = ReplayFeed(candles, key, start_bar=300, speed=2.0, hidden=hidden, clock=lambda: now[0])
    runtime = start_runtime(settings, model=False, feed=feed).runtime

    assert jobs.tick(runtime).bars == 1  # the bar after the history, at once
    assert jobs.tick(runtime).status == "idle"
    now[0] = 0.6  # one more bar at 2 bars per second
    assert jobs.tick(runtime).bars == 1
    now[0] = 2.1  # three more
    assert jobs.tick(runtime).bars == 3
    assert stored_count(runtime.require_store()) == 5


def test_heartbeat_stores_the_status_snapshot(
    settings: Settings, start_runtime: StartRuntime
) -> None:
    runtime = start_runtime(settings).runtime
    jobs.tick(runtime, max_bars=2)

    result = jobs.heartbeat(runtime)

    snapshot = ledger.get_state(runtime.require_store(), "heartbeat")
    assert result.status == "ok" and snapshot is not None
    assert snapshot["status"] == "ok" and snapshot["decisions"] == 2
    assert snapshot["chain"]["reachable"] is True
    assert snapshot["live_model"] == runtime.policy.model_id  # type: ignore[union-attr]
    assert snapshot["outbox_size"] == 0


def test_retrain_is_idle_when_switched_off(settings: Settings, start_runtime: StartRuntime) -> None:
    runtime = start_runtime(settings).runtime
    assert jobs.retrain(runtime).status == "idle"


def test_reward_epoch_waits_for_complete_bars_then_pays_and_publishes(
    settings: Settings, start_runtime: StartRuntime
) -> None:
    # every positive contribution paid in part (the scoring rule is tested in tests/*/rewards)
    rewards = settings.rewards.model_copy(update={"significance": 0.0, "group_r2": 1.0})
    runtime = start_runtime(settings.model_copy(update={"rewards": rewards})).runtime
    # history ends at bar 299: the first epoch is 15 (bars 300-319), valued at bar 320's close
    jobs.tick(runtime, max_bars=20)
    waiting = jobs.reward_epoch(runtime)
    jobs.tick(runtime, max_bars=1)
    paid = jobs.reward_epoch(runtime)

    assert waiting.status == "idle" and "epoch 15" in waiting.detail
    assert paid.status == "ok"
    store = runtime.require_store()
    assert list_epochs(store) == [15]
    record = read_epoch(store, 15)
    assert record is not None and (record.start_bar, record.end_bar) == (300, 320)
    assert record.attribution["source"] == "recorded"  # the decisions it made, as recorded
    assert record.attribution["source_detail"]["verified"] >= 20
    # in epoch 15 no strategy changes an action of this policy (v(all) = v(none)): nothing paid
    assert record.v_all == record.v_empty and record.total == 0 and record.root is None
    assert jobs.reward_epoch(runtime).status == "idle"  # epoch 16 is not complete
    jobs.tick(runtime, max_bars=20)
    assert jobs.reward_epoch(runtime).status == "ok"
    record = read_epoch(store, 16)
    assert record is not None and record.v_all != record.v_empty
    assert record.status == PUBLISHED and record.total > 0
    assert record.chain_key == runtime.replica.key  # type: ignore[union-attr]
    assert record.carry_in == read_epoch(store, 15).carry_out  # type: ignore[union-attr]


def test_a_fatal_error_stops_the_service_and_later_runs_do_nothing(
    settings: Settings, start_runtime: StartRuntime
) -> None:
    started = start_runtime(settings)
    runtime = started.runtime

    def broken(_: object) -> jobs.JobResult:
        raise ModelError("the live model's file is corrupt")

    result = jobs.run_job(runtime, "tick", broken)

    assert result.status == "fatal"
    assert runtime.stopping.is_set() and isinstance(runtime.fatal, ModelError)
    assert started.events("fatal")[0]["kind"] == "ModelError"
    assert jobs.run_job(runtime, "tick", jobs.tick).status == "idle"


def test_a_failed_retrain_is_reported_and_the_service_goes_on(
    settings: Settings, start_runtime: StartRuntime
) -> None:
    started = start_runtime(settings)
    runtime = started.runtime

    def too_short(_: object) -> jobs.JobResult:
        raise DataError("the validation split has 3 bars")

    result = jobs.run_job(runtime, "retrain", too_short)

    assert result.status == "failed" and runtime.fatal is None
    assert started.events("job_failed")[0]["job"] == "retrain"
    assert jobs.run_job(runtime, "tick", functools.partial(jobs.tick, max_bars=1)).bars == 1


def test_an_unexpected_exception_stops_the_service_crash_only(
    settings: Settings, start_runtime: StartRuntime
) -> None:
    started = start_runtime(settings)

    def bug(_: object) -> jobs.JobResult:
        raise KeyError("surprise")

    result = jobs.run_job(started.runtime, "tick", bug)

    assert result.status == "fatal"
    crashed = started.events("job_crashed")[0]
    assert "KeyError" in crashed["error"] and "traceback" in crashed


def test_job_runs_are_recorded_for_status(settings: Settings, start_runtime: StartRuntime) -> None:
    runtime = start_runtime(settings).runtime
    jobs.run_job(runtime, "tick", functools.partial(jobs.tick, max_bars=2))
    jobs.run_job(runtime, "heartbeat", jobs.heartbeat)

    recorded = {row["job"]: row for row in ledger.read_jobs(runtime.require_store())}
    assert recorded["tick"]["runs"] == 1 and recorded["tick"]["status"] == "ok"
    assert recorded["heartbeat"]["runs"] == 1


@pytest.mark.parametrize("max_bars", [1, 4])
def test_a_stop_request_lets_the_current_bar_finish_and_decides_no_more(
    settings: Settings, start_runtime: StartRuntime, max_bars: int
) -> None:
    runtime = start_runtime(settings).runtime
    jobs.tick(runtime, max_bars=max_bars)
    runtime.request_stop()

    assert jobs.tick(runtime, max_bars=5).status == "idle"
    assert stored_count(runtime.require_store()) == max_bars


def test_decisions_reach_the_log_a_batch_at_a_time_and_all_at_the_stop(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data", decision_batch_size=3)
    runtime = start_runtime(settings).runtime
    store = runtime.require_store()
    replica = runtime.replica
    assert replica is not None
    log = replica.deployment.contract(replica.backend.w3, "decision_log")

    for _ in range(2):  # the chain is replicated after each tick, here after each bar
        jobs.tick(runtime, max_bars=1)
    assert unconfirmed_count(store) == 2 and log.functions.count().call() == 0
    jobs.tick(runtime, max_bars=1)
    assert unconfirmed_count(store) == 0 and log.functions.count().call() == 3
    jobs.tick(runtime, max_bars=1)
    assert unconfirmed_count(store) == 1 and log.functions.count().call() == 3
    address = log.address
    runtime.close()  # the stop flushes the rest onto the chain file
    with EmbeddedBackend(embedded_state_dir(settings.data.dir), create=False) as chain:
        reopened = replica.deployment.contract(chain.w3, "decision_log")
        assert reopened.address == address and reopened.functions.count().call() == 4
