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
    policy: str = ""
    """What traded: `model <id>` or `baseline:flat` / `baseline:buy-and-hold`, and why."""
    policy_reason: str = ""
    policy_return: float | None = None
    flat_return: float = 0.0
    hold_return: float | None = None
    carried_total: int = 0
    rewards_note: str = ""
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
        policy = runtime.policy
        assert policy is not None
        result.model_id = policy.model_id
        if policy.is_baseline:
            result.policy = policy.model_id
            result.policy_reason = getattr(policy, "reason", "")
            say(
                f"   no model passed the gate, so the service trades the baseline policy "
                f"{policy.model_id}: {getattr(policy, 'reason', '')}; train a better model "
                f"with `agora train`; decisions logged to {log_path}"
            )
        else:
            result.policy = f"model {policy.model_id[:12]}"
            say(f"   live model {policy.model_id[:12]} (passed the gate); log: {log_path}")
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
        _compare_with_baselines(runtime, result)
        say(
            f"3. traded {result.decisions} bars through the pool contract: {result.policy} "
            f"{_pct(result.policy_return)}, flat {_pct(result.flat_return)}, buy-and-hold "
            f"{_pct(result.hold_return)} over the same bars, net of costs; paying epoch {epoch}"
        )
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"


def _compare_with_baselines(runtime: Any, result: DemoResult) -> None:
    """Set the traded policy's return over the traded bars, and buy-and-hold's on the same bars
    (`agent.service.equity`: the figures the dashboard's live page shows); flat earns 0."""
    from agent.service.equity import equity_since_start

    equity = equity_since_start(runtime.require_store(), runtime.settings, points=2)
    if equity is None or equity.live_value is None:
        return
    result.policy_return = equity.live_return
    result.hold_return = equity.hold_return


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
    result.carried_total = record.carry_out
    summary = record.attribution if isinstance(record.attribution, dict) else {}
    scores = summary.get("scores", [])
    significant = [s["name"] for s in scores if s["verdict"] == "significant"]
    best = max(scores, key=lambda s: s["z"], default=None)
    result.rewards_note = summary.get("reason") or (
        f"paid only for contributions beyond {summary.get('significance', 2):g} standard "
        f"errors ({', '.join(significant)}); the rest carried"
        if significant
        else "no strategy's contribution is distinguishable from noise (best: "
        f"{best['name']} at z = {best['z']:+.2f}, needs > {summary.get('significance', 2):g}): "
        "nothing earned, everything carried"
        if best is not None
        else "no strategy contributed: everything carried"
    )
    result.claimed_total = int(distributor.functions.epochClaimed(epoch).call())
    result.balances_match = balances == owed and result.claimed_total == result.paid_total
    shares = ", ".join(
        f"{a.strategy or 'remainder'} {a.amount / 10**18:,.2f}"
        for a in record.allocations
        if a.amount > 0
    )
    say(
        f"5. rewards epoch {epoch}: {result.paid_total / 10**18:,.2f} AGR paid and claimed "
        f"({shares or 'nobody'}), {result.carried_total / 10**18:,.2f} AGR carried: "
        f"{result.rewards_note}; balances "
        f"{'equal' if result.balances_match else 'DIFFER from'} the published amounts"
    )


def _backtest(settings: Settings, result: DemoResult, say: Say) -> None:
    from agent.backtest.runner import run_scenario, write_outputs
    from agent.backtest.scenario import default_scenario, with_overrides
    from agent.learn.registry import live_model
    from agent.store import Store

    with Store(settings.data.database_path) as store:
        has_model = live_model(store) is not None
    scenario = default_scenario(settings)
    if has_model:
        scenario = with_overrides(scenario, model="live")
    with Store(settings.data.database_path) as store:
        outcome = run_scenario(scenario, settings, store=store)
        outputs = write_outputs(outcome, scenario, store)
    result.report_html = str(outputs.report_path) if outputs.report_path else None
    tested = "the live model" if has_model else "every strategy (no model is live)"
    say(f"6. backtest of {tested} against the baselines: {result.report_html}")
