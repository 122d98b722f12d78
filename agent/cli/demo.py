"""`agora demo`: the main job on the configured defaults, end to end (see `agent.demo`)."""

from __future__ import annotations

import typer

from agent.cli.common import ConfigOption, JsonOption, print_json, settings_for, stdout


def demo(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Run the whole loop: market, service trading on-chain, reward epoch, audit, backtest.

    Exits 1 unless the data are clean, `audit verify` passes and the claimed balances equal
    the published amounts.
    """
    from dataclasses import asdict

    from agent.demo import demo as run_demo

    settings = settings_for(ctx, config)
    if not as_json:
        stdout.rule("Agora demo")
        stdout.print(f"config hash {settings.config_hash()}; data in {settings.data.dir}")
    result = run_demo(settings, say=(lambda _: None) if as_json else stdout.print)
    if as_json:
        print_json({**asdict(result), "ok": result.ok})
    else:
        for problem in result.problems:
            stdout.print(f"[red]problem:[/red] {problem}")
        stdout.rule("[green]all checks passed[/green]" if result.ok else "[red]checks failed[/red]")
    if not result.ok:
        raise typer.Exit(1)
