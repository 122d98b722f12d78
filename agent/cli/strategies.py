"""`agora strategies …`: list, scaffold, validate, submit and retire strategy plugins.

Each command is a thin layer over the function of the same name in `agent.plugins.registry`.
Commands that touch the chain open the configured backend; on the embedded chain, which starts
empty in every process, a registration lasts only as long as the command (use `anvil` with
`chain.anvil_persist` or an `rpc` node to keep it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.common import ConfigOption, JsonOption, print_json, settings_for, stderr, stdout

app = typer.Typer(
    help=(
        "Strategy plugins: list, scaffold, validate, evaluate, submit (register on-chain) "
        "and retire."
    ),
    no_args_is_help=True,
)


def _short(code_hash: str | None) -> str:
    return code_hash[:12] if code_hash else "-"


def _on_chain(item: Any) -> str:
    entry = item.registered
    if entry is None:
        return "-"
    text = f"v{entry.version}" + (" (retired)" if entry.status == "retired" else "")
    return text if item.code_registered else f"{text}, code differs"


@app.command("list")
def list_(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List strategies: status (OK, LOAD FAILED, DUPLICATE, QUARANTINED) and why, origin, hash.

    Long origins and reasons wrap in the table; nothing is cut. The on-chain version is read
    from the configured chain when Agora's contracts are recorded for it; nothing is deployed.
    """
    from rich.table import Table
    from rich.text import Text

    from agent.plugins.registry import list_strategies

    settings = settings_for(ctx, config)
    with stderr.status("loading plugins…"):
        listed = list_strategies(settings)
    if as_json:
        print_json([item.as_dict() for item in listed])
        return
    # Nothing is cut ("…"): status and hash keep their width, and the other columns wrap (a word
    # longer than the column, such as a path, folds) over as many lines as they need.
    table = Table("name", "status", "origin", "code hash", "on-chain", "reason", show_lines=True)
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = column.header in ("status", "code hash")
    for item in listed:
        colour = "green" if item.status == "OK" else "red"
        table.add_row(
            item.name,
            f"[{colour}]{item.status}[/{colour}]",
            Text(item.origin),
            _short(item.code_hash),
            _on_chain(item),
            Text(item.reason or "-"),
        )
    stdout.print(table)
    _ephemeral_note(settings)


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="Strategy name: lower-case letters, digits, - or _.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder to write the plugin and its test in.")
    ] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Scaffold a working strategy plugin NAME and its test, ready to edit and validate."""
    from agent.plugins.registry import new as run_new

    scaffold = run_new(name, directory)
    if as_json:
        print_json(
            {
                "name": scaffold.name,
                "strategy_path": str(scaffold.strategy_path),
                "test_path": str(scaffold.test_path),
            }
        )
        return
    stdout.print(f"created {scaffold.strategy_path} and {scaffold.test_path}", markup=False)
    stdout.print(
        f"next: edit it, run `pytest {scaffold.test_path}`, then "
        f"`agora strategies validate {scaffold.strategy_path}` and "
        f"`agora strategies submit {scaffold.strategy_path} --contributor 0x…`",
        markup=False,
    )


@app.command()
def validate(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A plugin file (PATH.py) or a strategy NAME.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a plugin file or a strategy by name; exit 1 if any check fails.

    The checks run on the reference data set: load, shape and range, determinism, causality
    (look-ahead), speed, and originality against the shipped and registered strategies.
    """
    from agent.plugins.registry import validate_strategy

    settings = settings_for(ctx, config)
    with stderr.status(f"validating {target}…"):
        report = validate_strategy(settings, target)
    if as_json:
        print_json(
            {
                "name": report.name,
                "origin": report.origin,
                "code_hash": report.code_hash,
                "passed": report.passed,
                "seconds_per_10k_bars": report.seconds_per_10k_bars,
                "checks": [vars(check) for check in report.checks],
            }
        )
    else:
        stdout.print(f"{report.name} ({report.origin}), code hash {_short(report.code_hash)}")
        for check in report.checks:
            mark = "ok  " if check.passed else "FAIL"
            stdout.print(f"  {mark} {check.name}: {check.message}", markup=False)
        verdict = "passed" if report.passed else f"failed {len(report.failures)} check(s)"
        stdout.print(f"{report.name}: {verdict}", markup=False)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def submit(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            help="A plugin file (PATH.py), or the NAME of a strategy from an installed package."
        ),
    ],
    contributor: Annotated[
        str, typer.Option("--contributor", help="Your payout address (0x…): rewards go there.")
    ],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a plugin file, register it on-chain and install it into the plugin directory.

    A new name becomes version 1; changed code under a registered name, the next version. A
    strategy from an installed package is named instead and registered with its package hash.
    """
    from agent.plugins.registry import submit as run_submit

    settings = settings_for(ctx, config)
    with stderr.status(f"validating and registering {target}…"):
        result = run_submit(settings, target, contributor)
    if as_json:
        print_json(result.as_dict())
        return
    how = "finished the interrupted submission of" if result.resumed else "registered"
    stdout.print(
        f"{how} strategy {result.name!r} version {result.version} on {result.chain_key} "
        f"(tx {result.tx_hash or '-'})",
        markup=False,
    )
    stdout.print(f"  code hash {result.code_hash}, payout {result.payout}", markup=False)
    where = result.installed_path or result.origin
    stdout.print(f"  {'installed as' if result.installed_path else 'from'} {where}", markup=False)
    _ephemeral_note(settings)


def _ephemeral_note(settings: Any) -> None:
    from agent.plugins.registry import EPHEMERAL_HINT

    if settings.chain.backend == "anvil" and not settings.chain.anvil_persist:
        stderr.print(f"note: chain.anvil_persist is off; {EPHEMERAL_HINT}", markup=False)


@app.command()
def retire(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The registered strategy to retire for good.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retire a registered strategy for good and move its file out of the plugin directory.

    The chain keeps its history; the name can never be registered again.
    """
    from agent.plugins.registry import retire as run_retire

    settings = settings_for(ctx, config)
    result = run_retire(settings, name)
    if as_json:
        print_json(result.as_dict())
        return
    stdout.print(
        f"retired strategy {result.name!r} at version {result.version} on {result.chain_key} "
        f"(tx {result.tx_hash or '-'})",
        markup=False,
    )
    if result.moved_to is not None:
        stdout.print(f"  moved {result.moved_from} to {result.moved_to}", markup=False)


@app.command()
def evaluate(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="A plugin file (PATH.py) or a strategy NAME (or NAME:k=v).")
    ],
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write an HTML report (works offline) to this file."),
    ] = None,
    model: Annotated[
        str,
        typer.Option("--model", help="Model to measure its contribution with (id, or live)."),
    ] = "live",
    probe_timesteps: Annotated[
        int,
        typer.Option(
            "--probe-timesteps",
            min=0,
            help="When the model does not observe it, train a probe model that does "
            "(one seed, this many timesteps) to measure its contribution.",
        ),
    ] = 0,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure a strategy's signal before submitting it: IC, consistency, decay, overlap.

    On the stored market of the configured series, or on the reference data set (generated)
    when none is stored: the information coefficient at 1, 4 and 24 bars with its bootstrap
    error, per-window consistency, decay, turnover, autocorrelation, and the R² that the
    registered strategies explain (the originality measure), and its contribution to the agent:
    its Shapley value when the model is re-run over the validation window, with its standard
    error and the payouts' significance verdict. Definitions: docs/contributing-strategies.md,
    "Evaluate it".
    """
    from rich.table import Table

    from agent.backtest.evaluation import evaluate_strategy, summary_rows, write_report
    from agent.compute import open_backend

    settings = settings_for(ctx, config)
    with open_backend(settings) as compute, stderr.status(f"evaluating {target}…"):
        evaluation = evaluate_strategy(
            settings, target, model=model, probe_timesteps=probe_timesteps, compute=compute
        )
    rows = summary_rows(evaluation)
    written = None if report is None else write_report(evaluation, rows, report)
    if as_json:
        print_json({**evaluation.as_dict(), "report": None if written is None else str(written)})
        return
    stdout.print(f"{evaluation.name} ({evaluation.origin}), on {evaluation.data}", markup=False)
    table = Table("figure", "value", "reading")
    table.columns[2].overflow = "fold"
    for row in rows:
        table.add_row(*row)
    stdout.print(table)
    windows = ", ".join(
        "-" if w.ic is None else f"{w.ic:+.3f}" for w in evaluation.diagnostics.windows
    )
    stdout.print(f"IC by window (h=1): {windows}", markup=False)
    if written is not None:
        stdout.print(f"report: {written}", markup=False)
