"""`agora tune SPACE`: search hyper-parameters with Ray Tune, register every trial's model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.common import (
    ConfigOption,
    JsonOption,
    open_store,
    print_json,
    settings_for,
    stdout,
)

SpaceArgument = Annotated[
    Path,
    typer.Argument(
        help="The search space: a YAML file (tune/*.yaml; its keys: docs/scale-out.md).",
        show_default=False,
    ),
]
TrialsOption = Annotated[
    int | None,
    typer.Option("--trials", min=1, max=100_000, help="Trials to run (default: the file's)."),
]
ReportOption = Annotated[
    Path | None,
    typer.Option(
        "--report",
        help="Where the HTML report goes (default: backtests/reports/tune-NAME-ID.html).",
    ),
]
AllowMaskedOption = Annotated[
    bool,
    typer.Option(
        "--allow-masked-strategies",
        help="Search even if a strategy of agent.strategies gives no signal (as agora train).",
    ),
]


def tune(
    ctx: typer.Context,
    space: SpaceArgument,
    trials: TrialsOption = None,
    report: ReportOption = None,
    allow_masked_strategies: AllowMaskedOption = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search hyper-parameters on the validation split; the chosen model is tested once.

    Every trial trains as `agora train` does with the configuration changed only by the
    trial's values. Every trial's model is registered (with its study and trial id); the
    study is recorded in the store and written as an HTML report. Needs Ray:
    pip install 'agora[ray]'.
    """
    from agent.compute import require_ray

    settings = settings_for(ctx, config)
    require_ray("agora tune")  # before reading the data: one line, exit 2
    from agent.backtest.tune_report import best_settings_yaml, write_report
    from agent.learn.space import load_space
    from agent.learn.tune import record_study, search

    searched = load_space(space, settings, trials=trials)
    with open_store(settings) as store:
        study = search(
            settings,
            store,
            searched,
            allow_masked_strategies=allow_masked_strategies,
            progress=True,
        )
        document = study.as_dict()
        path = report or Path("backtests/reports") / f"tune-{searched.name}-{study.id}.html"
        write_report(document, path)
        record_study(store, settings, study, report_path=str(path))
    if as_json:
        print_json({**document, "report": str(path)})
        return
    _print_study(document)
    stdout.print(
        f"\nThe chosen settings (put them in config.yaml):\n{best_settings_yaml(document)}"
    )
    stdout.print(f"\nreport: {path}", markup=False)


def _print_study(study: dict[str, Any]) -> None:
    from rich.table import Table

    from agent.backtest.tune_report import trial_rows

    headers, rows = trial_rows(study)
    table = Table(*headers, title=f"tune {study['space']['name']} ({study['id']})")
    for row in rows:
        table.add_row(*row)
    stdout.print(table)
    test, hold = study["test"], study["baselines"].get("test.buy_and_hold")
    stdout.print(
        f"chosen: trial {study['chosen_trial']}, model {study['chosen_model'][:12]}; "
        f"test split (measured once): {test['total_return']:+.2%} "
        f"(buy-and-hold {hold:+.2%}, flat +0.00%), costs {test['cost_fraction']:.2%}, "
        f"{test['trades']} trades",
        markup=False,
    )
