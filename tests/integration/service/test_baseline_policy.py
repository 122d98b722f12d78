"""No model passes the gate: the service trades a baseline, records it, and carries the rewards.

The service bootstraps a model on its history, as on a fresh data directory; the gate refuses
it (the margin is set so that no model could pass: the gate's own comparisons are tested with
hand-set models in tests/unit/learn/test_gate.py). The service must then trade the better of
flat and buy-and-hold on validation as an explicit baseline policy: every decision recorded
with the baseline named, logged on-chain and verified, and the epoch's rewards carried.
"""

from __future__ import annotations

from pathlib import Path

from agent.audit.outbox import read_decisions
from agent.audit.record import text_id
from agent.audit.verify import verify
from agent.learn import registry
from agent.rewards.ledger import read_epoch
from agent.service import jobs, ledger
from agent.service.status import status as read_status
from tests.unit.service.conftest import StartRuntime
from tests.unit.service.fixtures import service_settings


def test_a_refused_bootstrap_model_leaves_the_service_trading_a_recorded_baseline(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(
        tmp_path / "data", bootstrap_model=True, bootstrap_timesteps=128
    ).model_copy()
    agent = settings.agent.model_copy(
        update={"selection_margin": 10.0, "n_steps": 64, "batch_size": 32, "eval_every_steps": 64}
    )
    settings = settings.model_copy(update={"agent": agent})
    started = start_runtime(settings, model=False)
    runtime = started.runtime
    store = runtime.require_store()

    (trained,) = started.events("bootstrap_trained")
    assert trained["promoted"] is False and "does not beat" in trained["reason"]
    assert registry.live_model(store) is None
    (chosen,) = started.events("baseline_policy")
    policy = runtime.policy
    assert policy is not None and policy.is_baseline
    assert chosen["policy"] == policy.model_id in ("baseline:flat", "baseline:buy-and-hold")
    scores = chosen["validation"]
    assert policy.model_id == (
        "baseline:buy-and-hold" if scores["buy-and-hold"] > scores["flat"] else "baseline:flat"
    )

    epoch, complete = jobs.next_epoch(runtime)
    while not complete:
        assert jobs.tick(runtime, max_bars=5).bars > 0
        epoch, complete = jobs.next_epoch(runtime)
    assert jobs.reward_epoch(runtime).status == "ok"
    runtime.replica.flush_decisions(force=True)  # type: ignore[union-attr]

    records = [d.record() for d in read_decisions(store)]
    target = 1.0 if policy.model_id == "baseline:buy-and-hold" else 0.0
    assert len(records) >= settings.rewards.epoch_bars
    assert {r.model_id for r in records} == {text_id(policy.model_id)}
    assert {r.target_exposure for r in records} == {target}
    replica = runtime.replica
    assert replica is not None
    report = verify(store, replica.backend, replica.deployment.decision_log)
    assert report.ok and report.verified == len(records)

    record = read_epoch(store, epoch)
    assert record is not None and record.total == 0 and record.allocations == ()
    assert record.carry_out == record.pool == settings.rewards.emission_per_epoch
    assert record.attribution["baseline"] == policy.name

    status = read_status(settings)
    assert status["policy"]["kind"] == "baseline" and status["policy"]["id"] == policy.model_id
    assert ledger.get_state(store, "policy")["reason"].startswith("the bootstrap model")
