"""`agora train`: train the agent on the stored market, register the models, report metrics."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agent.cli.common import (
    ConfigOption,
    JsonOption,
    open_store,
    print_json,
    settings_for,
    stderr,
    stdout,
    with_options,
)

AlgoOption = Annotated[
    str | None,
    typer.Option("--algo", help="ppo, a2c, dqn or sac (default: agent.algorithm)."),
]
SeedsOption = Annotated[
    int | None,
    typer.Option("--seeds", min=1, help="Train this many seeds, from agent.seed on."),
]
TimestepsOption = Annotated[
    int | None,
    typer.Option("--timesteps", min=1, help="Environment steps per seed (default: config)."),
]
AllowMaskedOption = Annotated[
    bool,
    typer.Option(
        "--allow-masked-strategies",
        help=(
            "Train even if a strategy of agent.strategies gives no signal (it fails, times out "
            "or is quarantined): the agent then never sees it. Default: refuse, exit 2."
        ),
    ),
]


def train(
    ctx: typer.Context,
    algo: AlgoOption = None,
    seeds: SeedsOption = None,
    timesteps: TimestepsOption = None,
    allow_masked_strategies: AllowMaskedOption = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train the agent (best checkpoint by validation; the test split is measured once).

    Refuses (exit 2) when a strategy gives no signal, unless --allow-masked-strategies.
    """
    from typing import get_args

    from agent.config import AgentSettings
    from agent.errors import UsageError

    known = get_args(AgentSettings.model_fields["algorithm"].annotation)
    if algo is not None and algo.lower() not in known:
        raise UsageError(f"--algo {algo!r}: expected one of {', '.join(known)}")
    settings = settings_for(ctx, config)
    with_options(  # the agent section's bounds: a huge --timesteps would never end
        settings.agent,
        "agent",
        {"seeds": ("--seeds", seeds), "timesteps": ("--timesteps", timesteps)},
    )
    from agent.compute import open_backend
    from agent.learn.train import train as run_train

    with open_backend(settings) as backend, open_store(settings) as store:
        report = run_train(
            settings,
            store,
            algorithm=algo,
            seeds=seeds,
            timesteps=timesteps,
            progress=True,
            allow_masked_strategies=allow_masked_strategies,
            backend=backend,
        )
    for name, reason in report.masked.items():
        stderr.print(f"warning: {name}: no signal (masked): {reason}", markup=False)
    if as_json:
        print_json(report.as_dict())
        return
    _print_report(report)


def _pct(value: float) -> str:
    return f"{value:+.2%}"


def _print_report(report: Any) -> None:
    from rich.table import Table

    table = Table(
        "seed",
        "model",
        "best step",
        "validation",
        "test",
        "test buy&hold",
        "test costs",
        "test trades",
        title=f"{report.algorithm}, {report.timesteps} steps per seed",
    )
    for run in report.runs:
        table.add_row(
            str(run.seed),
            run.model_id[:12],
            str(run.best_step),
            _pct(run.validation.total_return),
            _pct(run.test.total_return),
            _pct(run.baselines["test.buy_and_hold"]),
            f"{run.test.cost_fraction:.2%}",
            str(run.test.trades),
        )
    stdout.print(table)
    if len(report.runs) > 1:
        for name in ("validation.total_return", "test.total_return"):
            stats = report.summary[name]
            stdout.print(
                f"{name}: mean {_pct(stats['mean'])}, std {stats['std']:.2%}, "
                f"min {_pct(stats['min'])}, max {_pct(stats['max'])}"
            )
    for run in report.runs:
        for warning in run.warnings:
            stdout.print(f"warning (seed {run.seed}): {warning}", markup=False, highlight=False)
    stdout.print("models are candidates: `agora models promote ID` makes one live")
