"""The `agora` command: a thin layer over the library, one module per command group.

Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error. Errors print one line;
`--debug` shows the traceback. Agora's own errors carry their exit code; click's usage errors
exit 2; an OS error that reaches this far names its path (exit 2 when the path is wrong, 1
otherwise); anything else is reported as "unexpected", which is a bug to fix at its source.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli import audit as audit_cli
from agent.cli import backtest as backtest_cli
from agent.cli import chain as chain_cli
from agent.cli import config_cmd, dashboard, data, demo
from agent.cli import models as models_cli
from agent.cli import rewards as rewards_cli
from agent.cli import service as service_cli
from agent.cli import strategies as strategies_cli
from agent.cli import train as train_cli
from agent.cli import tune as tune_cli
from agent.cli.common import stderr

app = typer.Typer(
    name="agora",
    help="Agora: a token-incentivised AI trading agent on an on-chain DEX simulator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(config_cmd.app, name="config")
app.command("demo")(demo.demo)
app.add_typer(backtest_cli.app, name="backtest")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(chain_cli.app, name="chain")
app.add_typer(rewards_cli.app, name="rewards")
app.command("run")(service_cli.run)
app.command("status")(service_cli.status)
app.command("dashboard")(dashboard.dashboard)
app.add_typer(strategies_cli.app, name="strategies")
app.command("train")(train_cli.train)
app.command("tune")(tune_cli.tune)
app.add_typer(models_cli.app, name="models")


def _version(value: bool) -> None:
    if value:
        from agent import __version__

        typer.echo(f"agora {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Configuration file for every command.", dir_okay=False
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = {"config": config, "debug": debug}


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning Agora errors into one clear line and the documented exit code."""
    from agent.errors import AgoraError

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = app(args=args, standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C (SIGINT) into exit code 130, silently
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except AgoraError as e:
        if debug:
            raise
        for number, line in enumerate(str(e).splitlines() or [type(e).__name__]):
            stderr.print(
                ("error: " if number == 0 else "       ") + line, markup=False, highlight=False
            )
        sys.exit(e.exit_code)
    except typer.Abort:
        stderr.print("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:
        if debug:
            raise
        stderr.print(f"error: {describe_os_error(e)}", markup=False, highlight=False)
        sys.exit(2 if isinstance(e, PATH_ERRORS) else 1)
    except Exception as e:
        exit_code = getattr(e, "exit_code", None)
        if hasattr(e, "show") and isinstance(exit_code, int):
            _show_click_error(e)  # click's errors (typer vendors click): usage errors exit 2
            sys.exit(exit_code)
        if debug:
            raise
        stderr.print(
            f"error: unexpected {type(e).__name__}: {e} (run with --debug for the traceback)",
            markup=False,
            highlight=False,
        )
        sys.exit(1)


PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)
"""OS errors about a path that is wrong (exit 2); any other OS error is a runtime error (1)."""


def describe_os_error(error: OSError) -> str:
    """Say what an OS error was about in one line: the path(s) and the system's reason."""
    reason = " ".join((error.strerror or str(error)).split()) or type(error).__name__
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _show_click_error(error: Exception) -> None:
    """Print a click error as one line naming the command's help; a help page as it is."""
    format_message = getattr(error, "format_message", None)
    if type(error).__name__ == "NoArgsIsHelpError" or format_message is None:
        error.show()  # type: ignore[attr-defined]
        return
    ctx = getattr(error, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    message = " ".join(str(format_message()).split())
    stderr.print(f"error: {message}{hint}", markup=False, highlight=False)
