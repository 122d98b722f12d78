"""`agora config …`: show the effective configuration, validate a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import ConfigOption, JsonOption, print_json, settings_for, stdout

app = typer.Typer(help="Show or check the configuration.", no_args_is_help=True)


@app.command()
def show(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective configuration (file + AGORA__ overrides), secrets masked."""
    import yaml

    from agent.config import effective_config

    data = effective_config(settings_for(ctx, config))
    if as_json:
        print_json(data)
    else:
        stdout.print(yaml.safe_dump(data, sort_keys=False).rstrip(), markup=False, highlight=False)


@app.command()
def check(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(help="File to check (default: the --config file).", dir_okay=False),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Validate a configuration file; exit 2 naming every bad key or value."""
    from agent.config import load_settings

    target = path or config or (ctx.find_root().obj or {}).get("config") or Path("config.yaml")
    settings = load_settings(target)
    stdout.print(f"{target}: OK (config hash {settings.config_hash()})", markup=False)
