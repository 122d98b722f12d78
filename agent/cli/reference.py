"""Generate the command reference (docs/cli.md) from the CLI itself.

`python -m agent.cli.reference > docs/cli.md` rewrites it; a test fails when the committed
page differs, so no command or option can go undocumented.
"""

from __future__ import annotations

import sys
from typing import Any

HEADER = """# Command reference

Generated from the CLI by `python -m agent.cli.reference > docs/cli.md`; a test keeps it
in sync. Every command takes `--config PATH` (before or after the command name) and exits
with 0 on success, 1 on a runtime error and 2 on a usage or configuration error. An error is
one line on stderr, `error: …`, naming what is at fault (the option, the configuration key and
the file or `AGORA__…` variable that set it, the path) and what is allowed; `--debug` adds the
traceback.
"""


def _walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found = [(path, command)]
    for name in sorted(getattr(command, "commands", {}) or {}):
        found.extend(_walk(command.commands[name], [*path, name]))
    return found


def _option_line(param: Any) -> str:
    names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    help_text = " ".join((getattr(param, "help", None) or "").split())
    return f"- {names}: {help_text}".rstrip(": ").rstrip()


def render() -> str:
    """Return the Markdown reference of every command, argument and option."""
    import typer

    from agent.cli.main import app

    root = typer.main.get_command(app)
    parts = [HEADER]
    for path, command in _walk(root, ["agora"]):
        title = " ".join(path)
        help_text = (command.help or "").strip()
        parts.append(f"\n## `{title}`\n")
        if help_text:
            parts.append(help_text.split("\n\n")[0].replace("\n", " ") + "\n")
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
        if arguments:
            parts.append(
                "\nArguments: " + ", ".join(f"`{a.name.upper()}`" for a in arguments) + "\n"
            )
        if options:
            parts.append("\n" + "\n".join(_option_line(o) for o in options) + "\n")
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
