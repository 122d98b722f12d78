"""Backtesting: would this have made money, and compared to what?

`engine` runs policies (a model, one strategy alone, the baselines) bar by bar with the
environment's timing and the DEX pool's exact math; `metrics` turns a run into the standard
figures (formulas in docs/metrics.md); `report` writes the results JSON and the offline HTML
report and records runs in the store; `scenario` validates the YAML files under backtests/;
`runner` runs a scenario end to end; `walkforward` trains and tests window by window;
`onchain` reruns a policy through the pool contract, logging DecisionRecords. Errors come
from the `agent.errors` tree: ConfigError (a bad scenario), DataError (no candles),
ModelError, ChainError (on-chain parity).
"""

from __future__ import annotations

from agent.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    ModelPolicy,
    SignalMapping,
    TargetPolicy,
    buy_and_hold,
    flat,
    random_policy,
    run_backtest,
    signal_to_target,
    strategy_policy,
)
from agent.backtest.metrics import Metrics, compute_metrics
from agent.backtest.report import BacktestRun, RunMetadata
from agent.backtest.runner import prepare, run_scenario, write_outputs
from agent.backtest.scenario import Scenario, load_scenario

__all__ = [
    "BacktestConfig",
    "BacktestResult",
    "BacktestRun",
    "Metrics",
    "ModelPolicy",
    "RunMetadata",
    "Scenario",
    "SignalMapping",
    "TargetPolicy",
    "buy_and_hold",
    "compute_metrics",
    "flat",
    "load_scenario",
    "prepare",
    "random_policy",
    "run_backtest",
    "run_scenario",
    "signal_to_target",
    "strategy_policy",
    "write_outputs",
]
