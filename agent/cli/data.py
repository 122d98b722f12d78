"""`agora data …`: market data into and out of the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.common import (
    ConfigOption,
    JsonOption,
    ProgressBar,
    open_store,
    print_json,
    settings_for,
    stdout,
    with_options,
)

app = typer.Typer(
    help="Market data: generate, import, download, list, show and check candles.",
    no_args_is_help=True,
)

SymbolOption = Annotated[
    str | None, typer.Option("--symbol", help="Market symbol (default: config).")
]
TimeframeOption = Annotated[
    str | None, typer.Option("--timeframe", help="Bar length such as 1m, 1h, 1d (default: config).")
]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="Source name of the series (default: config).")
]
ReplaceOption = Annotated[
    bool, typer.Option("--replace", help="Overwrite stored candles that differ (default: refuse).")
]


def _report_ingest(result: Any, as_json: bool) -> None:
    data = {
        "series": str(result.key),
        "received": result.received,
        "inserted": result.inserted,
        "unchanged": result.unchanged,
        "replaced": result.replaced,
    }
    if as_json:
        print_json(data)
    else:
        stdout.print(
            f"{data['series']}: {result.received} candles received, {result.inserted} new, "
            f"{result.unchanged} already stored, {result.replaced} replaced"
        )


@app.command()
def synth(
    ctx: typer.Context,
    bars: Annotated[int | None, typer.Option("--bars", min=2, help="Number of bars.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Random seed.")] = None,
    symbol: SymbolOption = None,
    timeframe: TimeframeOption = None,
    ic: Annotated[
        float | None,
        typer.Option(
            "--ic", min=0.0, max=0.9, help="Information coefficient of the planted component."
        ),
    ] = None,
    half_life: Annotated[
        float | None,
        typer.Option("--half-life", min=0.0, help="Planted component half-life in bars."),
    ] = None,
    replace: ReplaceOption = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate a seeded synthetic market and store it (same seed, same candles)."""
    from agent.market.synthetic import synth as run_synth

    settings = settings_for(ctx, config)
    params = with_options(
        settings.market.synthetic,
        "market.synthetic",
        {
            "bars": ("--bars", bars),
            "seed": ("--seed", seed),
            "planted.information_coefficient": ("--ic", ic),
            "planted.half_life_bars": ("--half-life", half_life),
        },
    )
    with open_store(settings) as store:
        result = run_synth(
            store,
            params,
            symbol or settings.market.symbol,
            timeframe or settings.market.timeframe,
            replace=replace,
        )
    _report_ingest(result, as_json)


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="CSV file with OHLCV candles.", dir_okay=False)],
    symbol: Annotated[str, typer.Option("--symbol", help="Market symbol, e.g. BTC/USDT.")],
    timeframe: Annotated[
        str,
        typer.Option(
            "--timeframe",
            help="Bar length of the file, e.g. 1h; checked against its timestamps' spacing.",
        ),
    ],
    source: Annotated[str, typer.Option("--source", help="Source name to store it under.")] = "csv",
    replace: ReplaceOption = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import a CSV file of candles, checked whole before anything is written, then written in
    pages that let a running service write in between.

    A bad line, bars further apart than `--timeframe` (exit 2) or a candle that differs from a
    stored one (without `--replace`) writes nothing. The candles are then written in pages of
    50,000, each its own short transaction; if writing fails part-way, the error says which
    candles are stored, and importing the same file again continues.
    """
    from agent.market.csv_source import import_csv

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        result = import_csv(store, path, symbol, timeframe, source=source, replace=replace)
    _report_ingest(result, as_json)


@app.command()
def download(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="First bar, ISO 8601 (2024-01-01).")],
    exchange: Annotated[
        str | None, typer.Option("--exchange", help="ccxt exchange id (default: config).")
    ] = None,
    symbol: SymbolOption = None,
    timeframe: TimeframeOption = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Last bar, ISO 8601 (default: now).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download candles from an exchange through ccxt, resuming from what is cached."""
    from agent.market.exchange import download as run_download
    from agent.market.schema import parse_time_ms

    settings = settings_for(ctx, config)
    ex_settings = settings.market.exchange
    if exchange:
        ex_settings = ex_settings.model_copy(update={"id": exchange})
    since_ms = parse_time_ms(since, what="--since")
    until_ms = parse_time_ms(until, what="--until") if until else None
    with open_store(settings) as store, ProgressBar("downloading") as progress:
        result = run_download(
            store,
            ex_settings,
            symbol or settings.market.symbol,
            timeframe or settings.market.timeframe,
            since_ms,
            until_ms,
            progress=progress,
        )
    _report_ingest(result, as_json)


@app.command("list")
def list_(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the stored candle series."""
    from rich.table import Table

    from agent.market.data import list_series
    from agent.market.schema import format_time_ms

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        series = list_series(store)
    rows = [
        {
            "source": s.key.source,
            "symbol": s.key.symbol,
            "timeframe": s.key.timeframe,
            "bars": s.count,
            "first": format_time_ms(s.first_ms),
            "last": format_time_ms(s.last_ms),
        }
        for s in series
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no candles stored yet: try `agora data synth`")
        return
    table = Table("source", "symbol", "timeframe", "bars", "first", "last")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    stdout.print(table)


@app.command()
def show(
    ctx: typer.Context,
    source: SourceOption = None,
    symbol: SymbolOption = None,
    timeframe: TimeframeOption = None,
    start: Annotated[str | None, typer.Option("--start", help="From this time (ISO 8601).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Up to this time (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show the last N candles.")] = 20,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show stored candles of one series."""
    from rich.table import Table

    from agent.market.data import resolve_key
    from agent.market.data import show as run_show
    from agent.market.schema import format_time_ms, parse_time_ms

    settings = settings_for(ctx, config)
    key = resolve_key(settings, source, symbol, timeframe)
    with open_store(settings) as store:
        frame = run_show(
            store,
            key,
            start_ms=parse_time_ms(start, what="--start") if start else None,
            end_ms=parse_time_ms(end, what="--end") if end else None,
            limit=limit,
            names=("--start", "--end"),
        )
    records = [
        {
            "time": format_time_ms(int(r.open_time)),
            "open": r.open,
            "high": r.high,
            "low": r.low,
            "close": r.close,
            "volume": r.volume,
        }
        for r in frame.itertuples(index=False)
    ]
    if as_json:
        print_json({"series": str(key), "candles": records})
        return
    table = Table("time", "open", "high", "low", "close", "volume", title=str(key))
    for r in records:
        table.add_row(
            r["time"], *(f"{r[c]:.6g}" for c in ("open", "high", "low", "close", "volume"))
        )
    stdout.print(table)


@app.command()
def check(
    ctx: typer.Context,
    source: SourceOption = None,
    symbol: SymbolOption = None,
    timeframe: TimeframeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check stored candles for gaps and bad values; exit 1 if any series is not clean.

    With no series options, every stored series is checked.
    """
    from agent.market.data import check as run_check
    from agent.market.data import check_all, resolve_key

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        if source or symbol or timeframe:
            reports = [run_check(store, resolve_key(settings, source, symbol, timeframe))]
        else:
            reports = check_all(store)
    if as_json:
        print_json([r.as_dict() for r in reports])
    elif not reports:
        stdout.print("no candles stored yet: try `agora data synth`")
    for report in reports if not as_json else []:
        _print_report(report)
    if not reports or not all(r.clean for r in reports):
        raise typer.Exit(1)


def _print_report(report: Any) -> None:
    info = report.as_dict()
    verdict = "[green]clean[/green]" if report.clean else "[red]NOT CLEAN[/red]"
    stdout.print(
        f"{info['series']}: {info['bars']} bars, {info['first']} → {info['last']}: {verdict}"
    )
    for gap in report.gaps[:20]:
        stdout.print(f"  gap: {gap.describe()}")
    if len(report.gaps) > 20:
        stdout.print(
            f"  … and {len(report.gaps) - 20} more gaps ({report.missing_bars} bars missing)"
        )
    for problem in report.problems:
        stdout.print(f"  problem: {problem}", markup=False)
