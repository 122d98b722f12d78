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
    """Validate a configuration file and its strategies; exit 2 naming what is wrong.

    Every key is checked, then every `agent.strategies` entry is resolved: its name must be a
    usable strategy and its parameters ones the strategy declares (a third-party plugin is
    loaded in the sandbox to read them).
    """
    import os

    from agent.config import env_override_origins, load_settings
    from agent.errors import ConfigError
    from agent.plugins.resolve import resolve_strategies

    target = path or config or (ctx.find_root().obj or {}).get("config") or Path("config.yaml")
    settings = load_settings(target)
    culprit = env_override_origins(os.environ).get(("agent", "strategies"), str(target))
    try:
        resolve_strategies(settings.agent.strategies, settings)
    except ConfigError as e:
        raise ConfigError(f"{culprit}: {e}") from e
    stdout.print(f"{target}: OK (config hash {settings.config_hash()})", markup=False)
