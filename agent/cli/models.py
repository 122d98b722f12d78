"""`agora models …`: the model registry (list, show, promote through the gate, export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import ConfigOption, JsonOption, open_store, print_json, settings_for, stdout

app = typer.Typer(
    help="Trained models: list, show, promote (through the gate) and export.",
    no_args_is_help=True,
)

IdArgument = Annotated[str, typer.Argument(help="Model id, or a unique prefix (6+ characters).")]


@app.command("list")
def list_(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List registered models, newest first."""
    from rich.table import Table

    from agent.learn.registry import format_return, list_models, summary
    from agent.market.schema import format_time_ms

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        records = list_models(store)
    rows = [summary(r) for r in records]
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no models yet: try `agora train`")
        return
    table = Table("id", "status", "algorithm", "seed", "created", "validation", "test")
    for row in rows:
        table.add_row(
            row["id"][:12],
            row["status"],
            row["algorithm"],
            ",".join(str(s) for s in row["seeds"]),
            format_time_ms(row["created_ms"]),
            format_return(row["validation_return"]),
            format_return(row["test_return"]),
        )
    stdout.print(table)


@app.command()
def show(
    ctx: typer.Context,
    model_id: IdArgument,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show everything recorded about one model."""
    from agent.learn.registry import format_return
    from agent.learn.registry import show as run_show

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        record = run_show(store, model_id)
    data = record.as_dict()
    if as_json:
        print_json(data)
        return
    for key in ("id", "status", "algorithm", "seeds", "config_hash", "data_hash", "path"):
        stdout.print(f"{key}: {data[key]}", markup=False, highlight=False)
    stdout.print(f"series: {record.key}", markup=False, highlight=False)
    stdout.print(f"strategies: {', '.join(record.strategies)}", markup=False, highlight=False)
    for split in ("validation", "test"):
        metrics = record.metrics.get(split, {})
        stdout.print(
            f"{split}: return {format_return(metrics.get('total_return'))}, "
            f"costs {metrics.get('cost_fraction', 0):.2%}, trades {metrics.get('trades')}",
            markup=False,
            highlight=False,
        )
    for warning in record.metrics.get("warnings", []):
        stdout.print(f"warning: {warning}", markup=False, highlight=False)


@app.command()
def promote(
    ctx: typer.Context,
    model_id: IdArgument,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the gate (a deliberate rollback).")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a model live if it passes the gate: it must beat flat, buy-and-hold and the live
    model on the validation window, by `agent.selection_margin` standard errors."""
    from agent.learn.registry import promote as run_promote

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        result = run_promote(store, settings, model_id, force=force)
    if as_json:
        print_json(result.as_dict())
    else:
        verdict = "promoted" if result.promoted else "not promoted"
        stdout.print(f"{result.model_id[:12]}: {verdict}: {result.reason}", markup=False)
    if not result.promoted and result.reason != "already live":
        raise typer.Exit(1)


@app.command()
def export(
    ctx: typer.Context,
    model_id: IdArgument,
    path: Annotated[Path, typer.Argument(help="Target file, or a directory for <id>.zip.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy a model's file out of the data directory (its hash is checked first)."""
    from agent.learn.registry import export as run_export
    from agent.learn.registry import show as run_show

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        record = run_show(store, model_id)
        target = run_export(store, record.id, path)
    if as_json:
        print_json({"id": record.id, "path": str(target)})
    else:
        stdout.print(f"exported to {target}", markup=False, highlight=False)
