"""`agora demo`: the main job on embedded defaults, end to end, on a fresh machine."""

from __future__ import annotations

import typer

from agent.cli.common import ConfigOption, settings_for, stdout


def demo(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Run the main job on the configured defaults: synthetic market -> store -> quality report."""
    from agent.market.data import check, default_key
    from agent.market.synthetic import synth

    settings = settings_for(ctx, config)
    key = default_key(settings)
    stdout.rule("Agora demo")
    stdout.print(f"config hash {settings.config_hash()}; database {settings.data.database_path}")
    from agent.store import Store

    with Store(settings.data.database_path) as store:
        stdout.print(
            f"1. synthetic market {key} (seed {settings.market.synthetic.seed}, "
            f"{settings.market.synthetic.bars} bars)"
        )
        result = synth(store, settings.market.synthetic, key.symbol, key.timeframe, replace=True)
        stdout.print(f"   {result.inserted} new candles, {result.unchanged} already stored")
        report = check(store, key)
    verdict = "clean" if report.clean else "NOT CLEAN"
    stdout.print(f"2. quality: {report.bars} bars, {report.missing_bars} missing, {verdict}")
    if not report.clean:
        raise typer.Exit(1)
