"""`agora dashboard`: the web dashboard over the data directory (mirrors `agent.dashboard`)."""

from __future__ import annotations

from typing import Annotated

import typer

from agent.cli.common import ConfigOption, settings_for


def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to bind (loopback by default; any other needs AGORA_DASHBOARD_TOKEN).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65_535, help="Port (0 picks a free one).")
    ] = 8765,
    config: ConfigOption = None,
) -> None:
    """Serve the web dashboard: live equity and decisions, audit, contributors, models, backtests.

    Read-only unless AGORA_DASHBOARD_TOKEN is set: actions (verify, claim) need it as a bearer
    token. Stop with Ctrl-C.
    """
    from agent.dashboard.server import serve

    settings = settings_for(ctx, config)
    serve(settings, host=host, port=port)
