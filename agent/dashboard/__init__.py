"""The web dashboard (`agora dashboard`, and `agora run` beside /health and /metrics).

    app       create_app: the Starlette application, its routes, the actions' token, the
              decision stream (server-sent events)
    queries   what the pages show, read a page at a time through the library's readers
    views     the pages' HTML bodies
    pages     the layout, tables and inline scripts
    server    uvicorn: in the foreground (`serve`) or in a thread (`DashboardServer`); the
              loopback rule (`check_bind`)

Read-only by default and bound to 127.0.0.1; actions need AGORA_DASHBOARD_TOKEN. See
docs/dashboard.md.
"""

from __future__ import annotations

from typing import Any


def create_app(settings: Any, *, runtime: Any = None, token: str | None = None) -> Any:
    """Return the dashboard's ASGI application (see `agent.dashboard.app.create_app`)."""
    from agent.dashboard.app import create_app as build

    return build(settings, runtime=runtime, token=token)


__all__ = ["create_app"]
