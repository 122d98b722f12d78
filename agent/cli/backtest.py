"""`agora backtest …`: would this have made money, and compared to what?

`agora backtest [SCENARIO.yaml] [options]` runs a backtest (the `run` subcommand is implied),
`agora backtest list` lists recorded runs and `agora backtest show RUN` shows one. Each is a
thin layer over `agent.backtest` (`run_scenario`, `write_outputs`, `list_runs`, `get_run`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from agent.cli.common import (
    MAX_STORED_INT,
    ConfigOption,
    JsonOption,
    open_store,
    print_json,
    settings_for,
    stderr,
    stdout,
)

if TYPE_CHECKING:
    from agent.backtest.scenario import Scenario
    from agent.compute import Backend
    from agent.config import Settings


class _RunByDefault(TyperGroup):
    """A group whose `run` command is implied: `agora backtest x.yaml` = `... run x.yaml`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help=(
        "Backtest a model, a strategy or the baselines: `agora backtest [SCENARIO.yaml]` "
        "(run is implied), `agora backtest list`, `agora backtest show RUN`."
    ),
)

CONSOLE_COLUMNS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "trades",
    "win_rate",
    "profit_factor",
    "exposure_time",
    "turnover",
    "fees_quote",
    "impact_quote",
    "gas_quote",
    "final_equity",
)
"""Columns of the console table on a wide terminal (see report.TABLE_COLUMNS)."""
NARROW_COLUMNS: tuple[str, ...] = (
    "total_return",
    "sharpe",
    "max_drawdown",
    "trades",
    "fees_quote",
    "impact_quote",
    "gas_quote",
    "final_equity",
)
"""Columns kept on a console narrower than `WIDE_CONSOLE` characters."""
WIDE_CONSOLE = 150
PIPED_WIDTH = 220
"""Width of the table when stdout is not a terminal (a file or pipe never wraps it)."""


@app.command("run")
def run(
    ctx: typer.Context,
    scenario: Annotated[
        Path | None,
        typer.Argument(
            help="Scenario file (backtests/<name>.yaml); default: the configured market.",
            dir_okay=False,
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model to test: a model id or `live`.")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="Test one strategy alone as the policy.")
    ] = None,
    onchain: Annotated[
        bool,
        typer.Option(
            "--onchain", help="Send every trade of the tested policy through the pool contract."
        ),
    ] = False,
    start: Annotated[
        str | None,
        typer.Option("--start", help="First traded bar (ISO 8601), the scenario's data.start."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Last bar (ISO 8601), the scenario's data.end.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Seed of the run.")] = None,
    fee_bps: Annotated[
        int | None, typer.Option("--fee-bps", min=0, max=1000, help="Pool fee (basis points).")
    ] = None,
    liquidity: Annotated[
        float | None,
        typer.Option("--liquidity", min=0.0, help="Pool depth per side (quote currency)."),
    ] = None,
    gas_price: Annotated[
        float | None, typer.Option("--gas-price", min=0.0, help="Gas price (gwei).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for results and reports (default backtests/reports)."),
    ] = None,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Write no files and record nothing.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a backtest: the tested policy against every strategy alone and the baselines."""
    from agent.backtest.runner import output_dir, run_scenario, write_outputs
    from agent.backtest.scenario import default_scenario, load_scenario, with_overrides
    from agent.errors import UsageError

    settings = settings_for(ctx, config)
    if model and strategy:
        raise UsageError("give --model or --strategy, not both")
    base = load_scenario(scenario) if scenario else default_scenario(settings)
    chosen = with_overrides(
        base,
        model=model,
        strategy=strategy,
        start=start,
        end=end,
        seed=seed,
        execution="onchain" if onchain else None,
        fee_bps=fee_bps,
        liquidity_quote=liquidity,
        gas_price_gwei=gas_price,
    )
    if not no_report:
        output_dir(chosen, out)  # a folder that cannot be written fails now, not after the run
    with (
        _backend(settings, chosen) as backend,
        open_store(settings) as store,
        _StageBar() as progress,
    ):
        result = run_scenario(chosen, settings, store=store, progress=progress, backend=backend)
        outputs = None if no_report else write_outputs(result, chosen, store, out)
        if outputs is None and result.onchain is not None:
            from agent.backtest.report import record_run

            record_run(store, result, None, None)  # its decisions are on-chain: keep the records
    paths = {
        "results": str(outputs.results_path) if outputs and outputs.results_path else None,
        "report": str(outputs.report_path) if outputs and outputs.report_path else None,
    }
    if as_json:
        from dataclasses import asdict

        from agent.backtest.report import summary_document

        print_json({"metadata": asdict(result.metadata), **summary_document(result), **paths})
        return
    meta = result.metadata
    _print_table(
        f"{meta.name}: {meta.series}, {meta.first_time} → {meta.last_time}, {meta.bars:,} bars",
        [(r.name, r.kind, result.metrics[r.name].as_dict()) for r in result.results],
    )
    _print_warnings(result.warnings)
    for window in result.windows:
        stdout.print(
            f"window {window['window']}: {window['test_from']} → {window['test_to']}: "
            f"return {window['total_return']:.2%}, {window['trades']} trades",
            highlight=False,
        )
    stdout.print(
        f"run {meta.run_id}; config {meta.config_hash}, data {meta.data_hash}, "
        f"code {meta.code_version}",
        highlight=False,
    )
    for label, path in paths.items():
        if path:
            stdout.print(f"{label}: {path}", highlight=False)


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_STORED_INT, help="Show the last N runs.")
    ] = 20,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List recorded backtest runs, newest first."""
    from rich.table import Table

    from agent.backtest.report import list_runs

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        runs = list_runs(store, limit)
    if as_json:
        print_json(runs)
        return
    if not runs:
        stdout.print("no backtest runs recorded yet: try `agora backtest`")
        return
    table = Table("run", "created", "name", "mode", "policy", "model", "seed", "report")
    for r in runs:
        table.add_row(
            r["run_id"],
            r["created_at"],
            r["name"],
            r["mode"],
            r["main_policy"] or "–",
            r["model_id"] or "–",
            str(r["seed"]),
            r["report_path"] or "–",
        )
    stdout.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique prefix).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one recorded run: its metadata and comparison table."""
    from agent.backtest.report import get_run

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        record = get_run(store, run_id)
    if as_json:
        print_json(record)
        return
    meta = record["summary"]["metadata"]
    for key in (
        "run_id",
        "created_at",
        "name",
        "mode",
        "main_policy",
        "series",
        "first_time",
        "last_time",
        "bars",
        "execution",
        "config_hash",
        "data_hash",
        "model_id",
        "seed",
        "code_version",
    ):
        stdout.print(f"{key}: {meta.get(key)}", highlight=False, markup=False)
    stdout.print(f"strategy hashes: {meta.get('strategy_hashes')}", highlight=False, markup=False)
    policies = record["summary"]["policies"]
    _print_table(meta["name"], [(p["name"], p["kind"], p["metrics"]) for p in policies])
    _print_warnings({p["name"]: p["warnings"] for p in policies})
    for label in ("results_path", "report_path"):
        if record.get(label):
            stdout.print(f"{label.removesuffix('_path')}: {record[label]}", highlight=False)


def _backend(settings: Settings, scenario: Scenario) -> AbstractContextManager[Backend]:
    """Open the configured compute backend for a walk-forward (its windows train as tasks).

    A single backtest has nothing to spread, so it runs here and starts no Ray.
    """
    from contextlib import nullcontext

    from agent.compute import LocalBackend, open_backend

    if scenario.walkforward is None:
        return nullcontext(LocalBackend())
    return open_backend(settings)


def _print_table(title: str, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Print the comparison table; a narrow console gets the essential columns only."""
    from rich import box
    from rich.table import Table

    from agent.backtest.report import TABLE_COLUMNS, format_cell

    piped = not stdout.is_terminal
    wide = piped or stdout.width >= WIDE_CONSOLE
    keys = CONSOLE_COLUMNS if wide else NARROW_COLUMNS
    columns = [c for c in TABLE_COLUMNS if c[0] in keys]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("policy", no_wrap=True)
    if wide:
        table.add_column("kind")
    for _, header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for name, kind, metrics in rows:
        cells = [format_cell(metrics.get(key), fmt) for key, _, fmt in columns]
        table.add_row(name, *([kind] if wide else []), *cells)
    if piped:
        import sys

        from rich.console import Console

        Console(file=sys.stdout, width=max(stdout.width, PIPED_WIDTH)).print(table)
    else:
        stdout.print(table)


def _print_warnings(warnings: dict[str, list[str]]) -> None:
    for name, notes in warnings.items():
        for note in notes:
            stdout.print(f"warning: {name}: {note}", highlight=False, markup=False)


class _StageBar:
    """A rich progress bar on stderr with one task per stage (policy), fed by callbacks."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not stderr.is_terminal,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        self._bar.start()

        def update(stage: str, done: int, total: int) -> None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()
