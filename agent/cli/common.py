"""What every command shares: the --config/--json options, settings, store and output."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default: ./config.yaml if present, else built-in defaults).",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]

MAX_STORED_INT = 2**63 - 1
"""The largest integer SQLite stores: the `max` of every integer option that reaches it."""

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def settings_for(ctx: typer.Context, config: Path | None) -> Any:
    """Load the settings a command runs with: its own --config, else the global one."""
    from agent.config import load_settings

    root = ctx.find_root()
    path = config or (root.obj or {}).get("config")
    return load_settings(path)


def with_options(section: Any, key: str, options: Mapping[str, tuple[str, Any]]) -> Any:
    """Return a settings section with command-line options over it, validated like the file.

    Args:
        section: the settings model the options override (`settings.market.synthetic`).
        key: its key path in the configuration (`market.synthetic`), for messages.
        options: by field path inside the section (`planted.half_life_bars`), the option's
            name and value; None leaves the configured value.

    Raises:
        UsageError: one line per bad option, naming it, the key and the allowed range.
    """
    from pydantic import ValidationError

    from agent.config import Location, format_validation_error
    from agent.errors import UsageError

    data = section.model_dump()
    origins: dict[Location, str] = {}
    for path, (option, value) in options.items():
        if value is None:
            continue
        *parents, name = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[name] = value
        origins[tuple(path.split("."))] = option
    try:
        return type(section).model_validate(data)
    except ValidationError as e:
        message = format_validation_error(
            e, "command line", model=type(section), origins=origins, prefix=key
        )
        raise UsageError(message) from e


def open_store(settings: Any) -> Any:
    from agent.store import Store

    return Store(settings.data.database_path)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


class ProgressBar:
    """A rich progress bar on stderr fed by (done, expected) callbacks; hidden when stderr is
    not a terminal, so logs and pipes stay clean."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
            disable=not stderr.is_terminal,
        )
        self._task = self._bar.add_task(label, total=None)

    def __enter__(self) -> Any:
        self._bar.start()

        def update(done: int, expected: int | None) -> None:
            self._bar.update(self._task, completed=done, total=expected)

        return update

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()
