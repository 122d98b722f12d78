"""The main job, end to end, on the configured defaults (`agora demo`, `make demo`).

Synthetic market → store → quality check → the service on the embedded chain (it trains a first
model on the history, then trades bar by bar through the pool contract, logs every decision to
the DecisionLog and pays one reward epoch, claims included) → `audit verify` → claimed balances
against the published amounts → a backtest of the live model against every baseline and
strategy, with its HTML report. Each step prints one line; the result says whether it all held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Settings

Say = Callable[[str], None]


@dataclass
class DemoResult:
    """What the demo did and whether every check held."""

    bars: int = 0
    data_clean: bool = False
    decisions: int = 0
    model_id: str | None = None
    epoch: int | None = None
    paid_total: int = 0
    claimed_total: int = 0
    balances_match: bool = False
    audit_ok: bool = False
    audit_detail: str = ""
    report_html: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.data_clean and self.audit_ok and self.balances_match and not self.problems


def demo_settings(settings: Settings) -> Settings:
    """Return the settings the demo runs with: the configuration, replaying as fast as it can,
    with the epoch's claims submitted for every contributor."""
    service = settings.service.model_copy(update={"replay_speed": 0.0, "pay_rewards": True})
    rewards = settings.rewards.model_copy(update={"auto_claim": True})
    return settings.model_copy(update={"service": service, "rewards": rewards})


def demo(settings: Settings, *, say: Say = print) -> DemoResult:
    """Run the whole loop once and check it; see the module docstring."""
    from agent.market.data import check, default_key
    from agent.market.synthetic import synth
    from agent.store import Store

    settings = demo_settings(settings)
    result = DemoResult()
    key = default_key(settings)
    with Store(settings.data.database_path) as store:
        ingest = synth(store, settings.market.synthetic, key.symbol, key.timeframe, replace=True)
        report = check(store, key)
    result.bars, result.data_clean = report.bars, report.clean
    say(
        f"1. market {key}: {report.bars} bars ({ingest.inserted} new), "
        f"{'clean' if report.clean else 'NOT CLEAN'}"
    )
    if not report.clean:
        result.problems.append("the synthetic market did not pass the quality checks")
        return result
    _service_epoch(settings, result, say)
    if result.model_id is not None:
        _backtest(settings, result, say)
    return result


def _service_epoch(settings: Settings, result: DemoResult, say: Say) -> None:
    from agent.service import jobs, ledger
    from agent.service.runtime import ServiceRuntime
    from agent.service.telemetry import ServiceLog

    log_path = Path(settings.data.dir) / "demo-service.log"
    runtime = ServiceRuntime(settings, log=ServiceLog(path=log_path))
    try:
        say("2. service: starting on the embedded chain (trains a first model if none is live)")
        runtime.start()
        assert runtime.policy is not None
        result.model_id = runtime.policy.model_id
        say(f"   live model {result.model_id[:12]}; decisions logged to {log_path}")
        epoch, complete = jobs.next_epoch(runtime)
        epoch_bars = settings.rewards.epoch_bars
        while not complete:
            stored = ledger.count_candles(runtime.require_store(), runtime.key)
            tick = jobs.tick(runtime, max_bars=max(1, (epoch + 1) * epoch_bars + 1 - stored))
            result.decisions += tick.bars
            if tick.bars == 0 and runtime.exhausted:
                result.problems.append("the replay ended before a reward epoch was complete")
                return
            epoch, complete = jobs.next_epoch(runtime)
        say(f"3. traded {result.decisions} bars through the pool contract; paying epoch {epoch}")
        paid = jobs.reward_epoch(runtime)
        if paid.status != "ok":
            result.problems.append(f"the reward epoch did not run: {paid.detail}")
            return
        result.epoch = epoch
        runtime.replica.flush_decisions(force=True)  # type: ignore[union-attr]
        _check_audit(runtime, result, say)
        _check_claims(runtime, epoch, result, say)
    finally:
        runtime.close()


def _check_audit(runtime: Any, result: DemoResult, say: Say) -> None:
    from agent.audit.verify import verify

    replica = runtime.replica
    report = verify(runtime.require_store(), replica.backend, replica.deployment.decision_log)
    result.audit_ok = bool(report.ok)
    result.audit_detail = (
        f"{report.verified} decisions verified against the DecisionLog"
        if report.ok
        else f"MISMATCH: {report.mismatch}"
    )
    say(f"4. audit verify: {result.audit_detail}")


def _check_claims(runtime: Any, epoch: int, result: DemoResult, say: Say) -> None:
    from agent.rewards.ledger import read_epoch

    replica = runtime.replica
    record = read_epoch(runtime.require_store(), epoch)
    if record is None:
        result.problems.append(f"reward epoch {epoch} is not recorded in the store")
        return
    token = replica.deployment.contract(replica.backend.w3, "reward_token")
    distributor = replica.deployment.contract(replica.backend.w3, "reward_distributor")
    owed: dict[str, int] = {}
    for allocation in record.allocations:
        if allocation.leaf_index is not None and allocation.amount > 0:
            owed[allocation.account] = owed.get(allocation.account, 0) + allocation.amount
    balances = {account: int(token.functions.balanceOf(account).call()) for account in owed}
    result.paid_total = sum(owed.values())
    result.claimed_total = int(distributor.functions.epochClaimed(epoch).call())
    result.balances_match = balances == owed and result.claimed_total == result.paid_total
    shares = ", ".join(
        f"{a.strategy or 'remainder'} {a.amount / 10**18:,.2f}"
        for a in record.allocations
        if a.amount > 0
    )
    say(
        f"5. rewards epoch {epoch}: {result.paid_total / 10**18:,.2f} AGR published and "
        f"claimed ({shares}); balances {'equal' if result.balances_match else 'DIFFER from'} "
        "the published amounts"
    )


def _backtest(settings: Settings, result: DemoResult, say: Say) -> None:
    from agent.backtest.runner import run_scenario, write_outputs
    from agent.backtest.scenario import default_scenario, with_overrides
    from agent.store import Store

    scenario = with_overrides(default_scenario(settings), model="live")
    with Store(settings.data.database_path) as store:
        outcome = run_scenario(scenario, settings, store=store)
        outputs = write_outputs(outcome, scenario, store)
    result.report_html = str(outputs.report_path) if outputs.report_path else None
    say(f"6. backtest of the live model against the baselines: {result.report_html}")
